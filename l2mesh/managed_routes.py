"""Managed routes: a destination CIDR a network's members route into the overlay, on-link or via a member.

Written as `CIDR` (on-link: the destination is on the overlay segment itself,
as the network's own pool is) or `CIDR@VIA` (through the member whose
overlay address is VIA: an exit node for 0.0.0.0/0 or ::/0, a subnet router
for a LAN behind it). The same text is what `l2mesh-ctl network update
--route` takes and what the controller stores; the signed config carries
{"target", "via"} objects.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from l2mesh.errors import L2meshError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ROUTES_PER_NETWORK = 128


class RouteError(L2meshError):
    """A route that is not CIDR[@VIA] (bad CIDR, bad gateway, mixed address families)."""


@dataclass(frozen=True, order=True)
class ManagedRoute:
    target: str  # normalized CIDR, e.g. "198.19.200.0/24"
    via: str | None = None  # overlay address of the forwarding member; None: on-link

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.target)

    @property
    def gateway(self) -> IPAddress | None:
        return None if self.via is None else ipaddress.ip_address(self.via)

    @property
    def is_default(self) -> bool:
        """0.0.0.0/0 or ::/0: everything a member sends that nothing more specific claims."""
        return self.network.prefixlen == 0

    def spec(self) -> str:
        """The CIDR[@VIA] text (what the CLI takes and the controller stores)."""
        return self.target if self.via is None else f"{self.target}@{self.via}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "via": self.via}

    def __str__(self) -> str:
        return self.spec() if self.via is None else f"{self.target} via {self.via}"


def parse_route_spec(text: object) -> ManagedRoute:
    """'198.19.200.0/24@10.147.17.3' or '10.147.17.0/24' -> ManagedRoute; RouteError in one line."""
    if not isinstance(text, str):
        raise RouteError(f"invalid route {text!r}: expected CIDR or CIDR@VIA")
    target_text, sep, via_text = text.strip().partition("@")
    return make_route(target_text, via_text if sep else None)


def route_from_json(doc: object) -> ManagedRoute:
    """{"target": CIDR, "via": IP or null} (as configs carry routes) -> ManagedRoute."""
    if not isinstance(doc, dict) or "target" not in doc:
        raise RouteError("a route must be an object with a target")
    via = doc.get("via")
    return make_route(doc["target"], via)


def make_route(target: object, via: object | None) -> ManagedRoute:
    try:
        # strict=False: 198.19.200.7/24 means its network, as `ip route` reads it.
        network = ipaddress.ip_network(str(target).strip(), strict=False)
    except ValueError:
        raise RouteError(f"invalid route {target!r}: expected a CIDR such as 198.19.200.0/24") from None
    if via is None:
        return ManagedRoute(str(network))
    try:
        gateway = ipaddress.ip_address(str(via).strip())
    except ValueError:
        raise RouteError(f"invalid route gateway {via!r}: expected an overlay IP address after '@'") from None
    if gateway.version != network.version:
        raise RouteError(f"route {network} is IPv{network.version} but its gateway {gateway} is IPv{gateway.version}")
    if gateway.is_multicast or gateway.is_unspecified or gateway.is_loopback:
        raise RouteError(f"{gateway} cannot be a route's gateway")
    return ManagedRoute(str(network), str(gateway))
