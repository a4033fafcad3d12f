"""The network config a controller issues to a member (netconf), and its signature.

One document per (network, member): revision, timestamps, settings and the
member list with public keys, MACs, managed IPs, bridge flags, tags and
known endpoints, managed routes, the DNS domain members answer for, and
the network's flow rules as the operator wrote them, and where the
controller's instances listen (members move to another when theirs stops
answering). It travels as an Ed25519 signature (64 bytes) followed by
canonical JSON; members refuse it unsigned, signed by another key, issued to
someone else or older than the one they hold. JSON (not a construct struct)
because the document is read rarely, grows new fields, and humans debug it.
A member holding a recent revision is sent only what changed (netconf_delta.py).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from collections.abc import Iterable
from typing import Any

from l2mesh.dns_names import DnsNameError, default_dns_domain, normalize_domain
from l2mesh.errors import L2meshError
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_mac, format_network_id, format_node_id, member_mac, parse_network_id, parse_node_id
from l2mesh.managed_routes import MAX_ROUTES_PER_NETWORK, ManagedRoute, route_from_json
from l2mesh.rules.syntax import NO_RULES, RuleSet, is_valid_tag, parse_rules

DEFAULT_MTU_BYTES = 2800
MIN_MTU_BYTES = 1280
MAX_MTU_BYTES = 9000
SIGNATURE_BYTES = 64
NETCONF_TTL_S = 7 * 24 * 3600
# Members refresh every 25 s; a config is only this old when its controller has
# been unreachable for days. Then its member list (who is still authorized) is
# stale, and the member stops trusting it. Slack covers unsynchronized clocks.
EXPIRY_SLACK_S = 3600
MAX_TAGS_PER_MEMBER = 64
NO_TAGS: frozenset[str] = frozenset()
MAX_CONTROLLER_ENDPOINTS = 32
# Revisions travel as 64-bit unsigned integers (NetconfRequest, NetconfResponse, NetconfDelta): one held
# beyond that could never be asked about again, and building the next request would raise.
MAX_REVISION = 2**64 - 1


class NetconfError(L2meshError):
    """A network config is malformed, unsigned, signed by another key or not meant for us."""


@dataclass(frozen=True)
class MemberConfig:
    node_id: int
    identity: PublicIdentity
    ips: tuple[str, ...] = ()  # CIDR interface addresses, e.g. "10.147.17.5/24"
    bridge: bool = False
    endpoints: tuple[tuple[str, int], ...] = ()
    name: str = ""
    tags: frozenset[str] = frozenset()  # what flow rules' src-tag and dst-tag test

    def mac(self, network_id: int) -> bytes:
        return member_mac(self.node_id, network_id)


@dataclass(frozen=True)
class NetworkConfig:
    network_id: int
    revision: int
    issued_to: int
    name: str = ""
    timestamp_s: float = 0.0
    expires_s: float = 0.0
    mtu_bytes: int = DEFAULT_MTU_BYTES
    multicast_limit: int | None = None
    broadcast: bool = True
    private: bool = True
    members: tuple[MemberConfig, ...] = ()
    routes: tuple[ManagedRoute, ...] = field(default_factory=tuple)
    rules: RuleSet = NO_RULES
    dns_domain: str = ""  # as the controller set it; "" (an older controller's config): the default
    # Every live instance of the controller (several share one database, issue 12), the issuing one first;
    # empty from a controller that does not say (then members know only the one they reach).
    controllers: tuple[tuple[str, int], ...] = ()

    @property
    def effective_dns_domain(self) -> str:
        """The domain members answer DNS for: the one given, else `<network name>.l2mesh`."""
        return self.dns_domain or default_dns_domain(self.name, self.network_id)

    def expired(self, now_wall_s: float) -> bool:
        """Past its expiry (plus clock slack). 0 means none: configs from a local file do not expire."""
        return bool(self.expires_s) and now_wall_s > self.expires_s + EXPIRY_SLACK_S

    def member(self, node_id: int) -> MemberConfig | None:
        for member in self.members:
            if member.node_id == node_id:
                return member
        return None

    # -- JSON ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": format_network_id(self.network_id),
            "revision": self.revision,
            "issued_to": format_node_id(self.issued_to),
            "timestamp": self.timestamp_s,
            "expires": self.expires_s,
            **network_fields_json(self),
            "members": [member_json(m, self.network_id) for m in self.members],
        }
        if self.controllers:
            # Where the controller's instances are now, not network content: outside the settings deltas track.
            doc["controllers"] = controllers_json(self.controllers)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> "NetworkConfig":
        try:
            return _parse_config(doc)
        except NetconfError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError, L2meshError) as exc:
            raise NetconfError(f"malformed network config: {exc}") from None

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def sign(self, controller: Identity) -> bytes:
        body = self.canonical_bytes()
        return controller.sign(body) + body

    def with_changes(self, **changes: Any) -> "NetworkConfig":
        return replace(self, **changes)


def network_fields_json(config: NetworkConfig) -> dict[str, Any]:
    """The network-wide settings of a config as JSON: everything but its id, revision, recipient, times and members."""
    # Rules and DNS domain only when there are some: configs stay as older members
    # knew them, and a config without them means no rules and the default domain.
    doc: dict[str, Any] = {
        "name": config.name,
        "mtu": config.mtu_bytes,
        "multicast_limit": config.multicast_limit,
        "broadcast": config.broadcast,
        "private": config.private,
        "routes": [route.to_json() for route in config.routes],
    }
    if config.rules.text:
        doc["rules"] = config.rules.text
    if config.dns_domain:
        doc["dns_domain"] = config.dns_domain
    return doc


def member_json(member: MemberConfig, network_id: int) -> dict[str, Any]:
    return {
        "id": format_node_id(member.node_id),
        "x25519": member.identity.x25519_public.hex(),
        "ed25519": member.identity.ed25519_public.hex(),
        "mac": format_mac(member.mac(network_id)),
        "ips": list(member.ips),
        "bridge": member.bridge,
        "endpoints": [f"{_host_for_endpoint(h)}:{p}" for h, p in member.endpoints],
        "name": member.name,
        **({"tags": sorted(member.tags)} if member.tags else {}),
    }


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def verify_signed_config(
    signed: bytes, controller: PublicIdentity, network_id: int, member_id: int, now_wall_s: float
) -> NetworkConfig:
    """The config inside signed, if the controller signed it, for this network and this member, and unexpired."""
    if len(signed) <= SIGNATURE_BYTES:
        raise NetconfError("network config is not signed")
    signature, body = signed[:SIGNATURE_BYTES], signed[SIGNATURE_BYTES:]
    if not controller.verify(body, signature):
        raise NetconfError("network config signature does not verify against the controller's key")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise NetconfError("network config is not valid JSON") from None
    config = NetworkConfig.from_json(doc)
    if config.network_id != network_id:
        raise NetconfError("network config is for another network")
    if config.issued_to != member_id:
        raise NetconfError("network config was issued to another member")
    if config.expired(now_wall_s):
        raise NetconfError("network config has expired")
    return config


_ENDPOINT_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>[0-9]{1,5})")


def parse_endpoint(text: str) -> tuple[str, int]:
    """'198.18.1.2:9993' or '[2001:db8::1]:9993' -> (host, port); IPv6 needs its brackets."""
    match = _ENDPOINT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise NetconfError(f"invalid endpoint {text!r}: expected IP:PORT or [IPv6]:PORT")
    try:
        address = ipaddress.ip_address(match.group("v6") or match.group("v4"))
    except ValueError:
        raise NetconfError(f"invalid endpoint {text!r}: bad IP address") from None
    if (address.version == 6) != (match.group("v6") is not None):
        raise NetconfError(f"invalid endpoint {text!r}: IPv6 addresses go in brackets")
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise NetconfError(f"invalid endpoint {text!r}: port out of range")
    return str(address), port


def format_endpoint(endpoint: tuple[str, int]) -> str:
    """(host, port) -> 'IP:PORT', or '[IPv6]:PORT' (what parse_endpoint reads)."""
    return f"{_host_for_endpoint(endpoint[0])}:{endpoint[1]}"


def usable_endpoint(endpoint: tuple[str, int]) -> bool:
    """An address a peer could send to: a real port, not unspecified, multicast, loopback or broadcast."""
    try:
        host, port = endpoint
        address = ipaddress.ip_address(host)
    except (ValueError, TypeError):
        return False
    if not isinstance(port, int) or not 0 < port < 65536:
        return False
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        return False
    return not (address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"))


def usable_endpoints(endpoints: Iterable[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    """The first `limit` usable ones of the endpoints a node told us about (they are handed on to others)."""
    return [e for e in endpoints if usable_endpoint(e)][:limit]


def _endpoints(texts: Any) -> tuple[tuple[str, int], ...]:
    """The usable endpoints among texts; a bad one is skipped, not a reason to refuse the whole config."""
    out = []
    for text in texts:
        try:
            endpoint = parse_endpoint(text)
        except NetconfError:
            continue
        if usable_endpoint(endpoint):
            out.append(endpoint)
    return tuple(out)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise NetconfError(f"{name} must be an integer")
    return value


def parse_revision(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REVISION:
        raise NetconfError(f"{name} must be an integer within 0..{MAX_REVISION}")
    return value


def _host_for_endpoint(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_member(doc: Any, network_id: int) -> MemberConfig:
    if not isinstance(doc, dict):
        raise NetconfError("member entry must be an object")
    identity = PublicIdentity.from_json(doc)
    node_id = parse_node_id(doc["id"])
    if node_id != identity.node_id:
        raise NetconfError(f"member {doc['id']} keys hash to another id")
    ips = tuple(str(ipaddress.ip_interface(ip)) for ip in doc.get("ips", []))
    endpoints = _endpoints(doc.get("endpoints", []))
    mac = doc.get("mac")
    if mac is not None and mac != format_mac(member_mac(node_id, network_id)):
        raise NetconfError(f"member {doc['id']} has a MAC that is not derived from its id")
    return MemberConfig(
        node_id=node_id,
        identity=identity,
        ips=ips,
        bridge=bool(doc.get("bridge", False)),
        endpoints=endpoints,
        name=str(doc.get("name", "")),
        tags=_tags(doc.get("tags", []), doc["id"]),
    )


def _tags(value: Any, member: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS_PER_MEMBER:
        raise NetconfError(f"member {member} tags must be a list of at most {MAX_TAGS_PER_MEMBER} tags")
    for tag in value:
        if not is_valid_tag(tag):
            raise NetconfError(f"member {member} has an invalid tag {str(tag)[:40]!r}")
    return frozenset(value) if value else NO_TAGS  # one shared empty set: most members have no tags


def _parse_config(doc: Any) -> NetworkConfig:
    if not isinstance(doc, dict):
        raise NetconfError("network config must be a JSON object")
    network_id = parse_network_id(doc["id"])
    members = tuple(parse_member(m, network_id) for m in doc.get("members", []))
    if len({m.node_id for m in members}) != len(members):
        raise NetconfError("network config lists a member twice")
    return NetworkConfig(
        network_id=network_id,
        revision=parse_revision(doc["revision"], "revision"),
        issued_to=parse_node_id(doc["issued_to"]),
        timestamp_s=float(doc.get("timestamp", 0.0)),
        expires_s=float(doc.get("expires", 0.0)),
        members=members,
        controllers=parse_controllers(doc.get("controllers", [])),
        **parse_network_fields(doc),
    )


def parse_network_fields(doc: Any) -> dict[str, Any]:
    """NetworkConfig's network-wide fields (keyword arguments) from their JSON (see network_fields_json)."""
    if not isinstance(doc, dict):
        raise NetconfError("network settings must be a JSON object")
    mtu = _int(doc.get("mtu", DEFAULT_MTU_BYTES), "mtu")
    if not MIN_MTU_BYTES <= mtu <= MAX_MTU_BYTES:
        raise NetconfError(f"MTU {mtu} out of range {MIN_MTU_BYTES}..{MAX_MTU_BYTES}")
    limit = doc.get("multicast_limit")
    if limit is not None and _int(limit, "multicast_limit") < 1:
        raise NetconfError("multicast_limit must be a positive integer or null")
    route_docs = doc.get("routes", [])
    if not isinstance(route_docs, list) or len(route_docs) > MAX_ROUTES_PER_NETWORK:
        raise NetconfError(f"routes must be a list of at most {MAX_ROUTES_PER_NETWORK} routes")
    routes = tuple(route_from_json(r) for r in route_docs)
    try:
        dns_domain = normalize_domain(doc["dns_domain"]) if doc.get("dns_domain") else ""
    except DnsNameError as exc:
        raise NetconfError(str(exc)) from None
    return {
        "name": str(doc.get("name", "")),
        "mtu_bytes": mtu,
        "multicast_limit": None if limit is None else int(limit),
        "broadcast": bool(doc.get("broadcast", True)),
        "private": bool(doc.get("private", True)),
        "routes": routes,
        "rules": parse_rules(doc.get("rules", "")),
        "dns_domain": dns_domain,
    }


def controllers_json(controllers: tuple[tuple[str, int], ...]) -> list[str]:
    return [format_endpoint(e) for e in controllers]


def parse_controllers(value: Any) -> tuple[tuple[str, int], ...]:
    """A config's (or delta's) "controllers": the live instances' endpoints, at most MAX_CONTROLLER_ENDPOINTS."""
    if not isinstance(value, list):
        raise NetconfError("controllers must be a list")
    return _endpoints(value)[:MAX_CONTROLLER_ENDPOINTS]
