"""Networks and members as the controller stores them, and the rules that keep them valid.

Validation lives here, not in the API or the storage, so every path that
changes a network (HTTP, CLI, tests) gets the same one-line errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from l2mesh.dns_names import DnsNameError, default_dns_domain, normalize_domain
from l2mesh.errors import L2meshError
from l2mesh.identity import PublicIdentity
from l2mesh.ids import format_mac, format_network_id, format_node_id, member_mac
from l2mesh.managed_routes import MAX_ROUTES_PER_NETWORK, ManagedRoute, RouteError, parse_route_spec
from l2mesh.netconf import DEFAULT_MTU_BYTES, MAX_MTU_BYTES, MAX_TAGS_PER_MEMBER, MIN_MTU_BYTES
from l2mesh.rules.syntax import NO_RULES, TAG_SYNTAX, RuleSet, RuleSyntaxError, format_rule, is_valid_tag, parse_rules

# With --ip and no pool or route containing the address, the member gets this
# prefix so that members can reach each other on-link (a /32 could not).
FALLBACK_PREFIX_V4 = 24
FALLBACK_PREFIX_V6 = 64

MAX_POOLS_PER_NETWORK = 16  # a request cannot make every config carry (and every assignment scan) thousands
MAX_IPS_PER_MEMBER = 16


class ValidationError(L2meshError):
    """Admin input that does not fit the network (bad CIDR, duplicate IP, out of range...)."""


class NotFound(L2meshError):
    """An unknown network or member."""


@dataclass(frozen=True)
class Network:
    network_id: int
    name: str
    pools: tuple[str, ...] = ()
    routes: tuple[ManagedRoute, ...] = ()
    mtu_bytes: int = DEFAULT_MTU_BYTES
    multicast_limit: int | None = None
    broadcast: bool = True
    private: bool = True
    revision: int = 1
    created_s: float = 0.0
    rules: RuleSet = NO_RULES  # flow rules, as the operator wrote them (validated when set)
    dns_domain: str = ""  # as the admin set it; "" follows the name (`<name>.l2mesh`)

    @property
    def effective_dns_domain(self) -> str:
        return self.dns_domain or default_dns_domain(self.name, self.network_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": format_network_id(self.network_id),
            "name": self.name,
            "pools": list(self.pools),
            "routes": [route.to_json() for route in self.routes],
            "dns_domain": self.effective_dns_domain,
            "mtu": self.mtu_bytes,
            "multicast_limit": self.multicast_limit,
            "broadcast": self.broadcast,
            "private": self.private,
            "revision": self.revision,
            "created": self.created_s,
            "rules": len(self.rules.rules),
        }

    def rules_json(self) -> dict[str, Any]:
        """The network's flow rules: the text as written and each rule with its line (`network rules --json`)."""
        return {
            "id": format_network_id(self.network_id),
            "revision": self.revision,
            "text": self.rules.text,
            "rules": [{"line": r.line, "rule": format_rule(r), "action": r.action} for r in self.rules.rules],
        }


@dataclass(frozen=True)
class Member:
    network_id: int
    node_id: int
    identity: PublicIdentity | None = None  # unknown until the node first asks (pre-authorization)
    authorized: bool = False
    bridge: bool = False
    ips: tuple[str, ...] = ()
    name: str = ""
    created_s: float = 0.0
    last_seen_s: float | None = None
    endpoint: str | None = None
    tags: tuple[str, ...] = ()  # sorted, no duplicates: what flow rules' src-tag and dst-tag test
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": format_node_id(self.node_id),
            "network": format_network_id(self.network_id),
            "authorized": self.authorized,
            "bridge": self.bridge,
            "ips": [ip.split("/")[0] for ip in self.ips],
            "tags": list(self.tags),
            "cidrs": list(self.ips),
            "name": self.name,
            "mac": format_mac(member_mac(self.node_id, self.network_id)),
            "last_seen": self.last_seen_s,
            "endpoint": self.endpoint,
            "known": self.identity is not None,
        }


def validate_network_fields(
    name: str | None = None,
    pools: list[str] | None = None,
    mtu: int | None = None,
    multicast_limit: int | None = None,
    dns_domain: str | None = None,
) -> dict[str, Any]:
    """Normalized values for the fields given; ValidationError on the first bad one (routes: validate_routes)."""
    out: dict[str, Any] = {}
    if name is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise ValidationError("network name must be 1..64 characters")
        out["name"] = name.strip()
    if pools is not None:
        if not isinstance(pools, list):
            raise ValidationError("pools must be a list of CIDRs")
        if len(pools) > MAX_POOLS_PER_NETWORK:
            raise ValidationError(f"a network has at most {MAX_POOLS_PER_NETWORK} pools")
        out["pools"] = tuple(_cidr(p, "pool") for p in pools)
    if dns_domain is not None:
        try:
            # "" puts the default back: the domain follows the network's name again.
            out["dns_domain"] = normalize_domain(dns_domain) if dns_domain != "" else ""
        except DnsNameError as exc:
            raise ValidationError(str(exc)) from None
    if mtu is not None:
        if not isinstance(mtu, int) or not MIN_MTU_BYTES <= mtu <= MAX_MTU_BYTES:
            raise ValidationError(f"MTU must be an integer in {MIN_MTU_BYTES}..{MAX_MTU_BYTES}")
        out["mtu_bytes"] = mtu
    if multicast_limit is not None:
        if not isinstance(multicast_limit, int) or multicast_limit < 1:
            raise ValidationError("multicast limit must be a positive integer")
        out["multicast_limit"] = multicast_limit
    return out


def route_list(value: object, what: str) -> list[ManagedRoute]:
    """Routes as the API takes them: a list of "CIDR[@VIA]" texts or {"target", "via"} objects."""
    if not isinstance(value, list):
        raise ValidationError(f"{what} must be a list of routes, each CIDR or CIDR@VIA")
    routes = []
    for item in value:
        try:
            if isinstance(item, dict):
                item = item.get("target", "") if item.get("via") is None else f"{item.get('target', '')}@{item['via']}"
            routes.append(parse_route_spec(item))
        except RouteError as exc:
            raise ValidationError(str(exc)) from None
    return routes


def validate_routes(network: Network, routes: list[ManagedRoute]) -> tuple[ManagedRoute, ...]:
    """The network's route list, checked against its pools: one route per target, each gateway an
    overlay address (inside a pool or on-link route of the network), no gateway for a pool itself."""
    targets = [r.network for r in routes]
    if len(set(targets)) != len(targets):
        raise ValidationError("a route target is given twice")
    if len(routes) > MAX_ROUTES_PER_NETWORK:
        raise ValidationError(f"a network holds at most {MAX_ROUTES_PER_NETWORK} routes")
    overlay = [ipaddress.ip_network(p) for p in network.pools] + [r.network for r in routes if r.via is None]
    for route in routes:
        if route.via is None:
            continue
        gateway = route.gateway
        if not any(gateway in subnet for subnet in overlay):
            where = ", ".join(str(s) for s in overlay) or "none: give the network a pool (or an on-link route) first"
            raise ValidationError(f"route {route.spec()}: gateway {gateway} is not an overlay address of the network (pools and on-link routes: {where})")
        if any(route.network.subnet_of(subnet) for subnet in overlay if subnet.version == route.network.version):  # type: ignore[arg-type]
            raise ValidationError(f"route {route.spec()}: {route.target} is on the overlay itself; give it without @VIA")
    return tuple(sorted(routes, key=lambda r: (r.network.version, r.network)))


def validate_rules(text: object) -> RuleSet:
    """Rules text as the operator wrote it, parsed; the first bad line is the one-line ValidationError."""
    if not isinstance(text, str):
        raise ValidationError("rules must be text, one rule per line")
    try:
        return parse_rules(text)
    except RuleSyntaxError as exc:
        raise ValidationError(str(exc)) from None


def validate_tags(value: object) -> tuple[str, ...]:
    """A member's tags, sorted and without duplicates."""
    if not isinstance(value, list) or len(value) > MAX_TAGS_PER_MEMBER:
        raise ValidationError(f"tags must be a list of at most {MAX_TAGS_PER_MEMBER} tags")
    for tag in value:
        if not is_valid_tag(tag):
            raise ValidationError(f"invalid tag {str(tag)[:40]!r}: {TAG_SYNTAX}")
    return tuple(sorted(set(value)))


def _cidr(text: object, what: str) -> str:
    try:
        network = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ValidationError(f"invalid {what} {text!r}: expected a CIDR such as 10.147.17.0/24") from None
    if network.num_addresses < 4 and network.version == 4:
        raise ValidationError(f"{what} {text} is too small")
    return str(network)


def member_interface(network: Network, ip_text: str) -> str:
    """The CIDR a member gets for ip_text: the prefix of the pool or route holding it, else a fallback."""
    try:
        if "/" in str(ip_text):
            interface = ipaddress.ip_interface(ip_text)
            address = interface.ip
        else:
            address = ipaddress.ip_address(ip_text)
            interface = None
    except ValueError:
        raise ValidationError(f"invalid IP address {ip_text!r}") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise ValidationError(f"{address} cannot be a member address")
    if interface is not None:
        _check_host_address(interface)
        return str(interface)
    for cidr in (*network.pools, *(r.target for r in network.routes if r.via is None)):
        candidate = ipaddress.ip_network(cidr)
        if address in candidate:
            interface = ipaddress.ip_interface(f"{address}/{candidate.prefixlen}")
            _check_host_address(interface)
            return str(interface)
    prefix = FALLBACK_PREFIX_V4 if address.version == 4 else FALLBACK_PREFIX_V6
    return str(ipaddress.ip_interface(f"{address}/{prefix}"))


def _check_host_address(interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    net = interface.network
    if net.version == 4 and net.prefixlen < 31 and interface.ip in (net.network_address, net.broadcast_address):
        raise ValidationError(f"{interface.ip} is the network or broadcast address of {net}")


def assign_from_pools(network: Network, taken: set[str]) -> str | None:
    """The lowest free host address in the network's pools, as a CIDR, or None when full or poolless."""
    taken_ips = {ipaddress.ip_interface(t).ip for t in taken}
    for cidr in network.pools:
        pool = ipaddress.ip_network(cidr)
        for address in pool.hosts():
            if address not in taken_ips:
                return f"{address}/{pool.prefixlen}"
    return None


def check_no_duplicate_ips(wanted: tuple[str, ...], others: list[Member]) -> None:
    mine = [ipaddress.ip_interface(ip).ip for ip in wanted]
    if len(set(mine)) != len(mine):
        raise ValidationError("the same IP is given twice")
    for other in others:
        for ip in other.ips:
            if ipaddress.ip_interface(ip).ip in mine:
                raise ValidationError(f"IP {ipaddress.ip_interface(ip).ip} is already used by member {format_node_id(other.node_id)}")

