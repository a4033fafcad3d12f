"""Which of a network's managed routes this member installs, given how it joined and what its underlay needs.

Sans-IO: the edge (l2mesh/edge/node/kernel_routes.py) reads the kernel's main
routing table and the underlay addresses the daemon talks to, calls
plan_routes(), and installs what it returns. The rules:

- A route through this member itself (it is the exit node or subnet router)
  is not installed here: the kernel already delivers what it forwards.
- An on-link route that is the subnet of one of the member's own overlay
  addresses is there already (the kernel made it with the address).
- A default route (0.0.0.0/0, ::/0) only with --allow-default; it goes in a
  table of its own behind a policy rule, so the daemon's own UDP keeps to the
  underlay (see kernel_routes.py). Other routes unless --no-managed-routes.
- A non-default route that would take over part of the underlay is refused
  (and logged by the edge): one with the same destination as an underlay
  route, one inside a directly connected underlay subnet, or one holding
  an underlay gateway or an address the daemon sends its UDP to (a peer, the
  controller). Traffic for those would otherwise enter the overlay it is
  carrying, and the member would cut itself off.
- A gateway must lie on one of the member's overlay subnets, or the kernel
  could not reach it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from l2mesh.managed_routes import IPAddress, IPNetwork, ManagedRoute
from l2mesh.netconf import NetworkConfig
from l2mesh.node.join_options import JoinOptions


@dataclass(frozen=True)
class UnderlayRoute:
    """A route of the kernel's main table that l2mesh did not make for this network."""

    target: str  # CIDR
    gateway: str | None  # None: directly connected (scope link)
    device: str

    def __str__(self) -> str:
        return f"{self.target} {'via ' + self.gateway + ' ' if self.gateway else ''}dev {self.device}"


@dataclass(frozen=True)
class RoutePlan:
    install: tuple[ManagedRoute, ...] = ()  # the edge makes these (default routes in the policy table)
    present: tuple[ManagedRoute, ...] = ()  # on-link routes the member's own addresses already give
    skipped: tuple[tuple[ManagedRoute, str], ...] = ()  # not for this member, as it joined: said, not warned
    refused: tuple[tuple[ManagedRoute, str], ...] = ()  # would break the underlay or cannot work: warned

    @property
    def in_force(self) -> tuple[ManagedRoute, ...]:
        """What the member routes into the overlay once the plan is carried out (`l2mesh networks` "routes")."""
        return tuple(sorted(self.present + self.install))


NO_ROUTES = RoutePlan()


def plan_routes(
    config: NetworkConfig | None,
    node_id: int,
    options: JoinOptions,
    underlay: Iterable[UnderlayRoute] = (),
    underlay_hosts: Iterable[str] = (),
) -> RoutePlan:
    """The plan for one network; with no config (not yet authorized, deauthorized, left) it is to have none."""
    if config is None or not config.routes:
        return NO_ROUTES  # without looking for us among thousands of members
    me = config.member(node_id)
    if me is None:
        return NO_ROUTES
    own = [ipaddress.ip_interface(ip) for ip in me.ips]
    underlay = tuple(underlay)
    hosts = [ipaddress.ip_address(h) for h in underlay_hosts]
    install: list[ManagedRoute] = []
    present: list[ManagedRoute] = []
    skipped: list[tuple[ManagedRoute, str]] = []
    refused: list[tuple[ManagedRoute, str]] = []
    for route in config.routes:
        network, gateway = route.network, route.gateway
        if gateway is not None and any(gateway == i.ip for i in own):
            skipped.append((route, "this member is its gateway"))
        elif gateway is None and any(network == i.network for i in own):
            present.append(route)
        elif route.is_default and not options.allow_default:
            skipped.append((route, "a default route, and this member joined without --allow-default"))
        elif not route.is_default and not options.managed_routes:
            skipped.append((route, "this member joined with --no-managed-routes"))
        elif gateway is not None and not any(gateway in i.network for i in own):
            refused.append((route, f"its gateway {gateway} is not on this member's overlay subnets"))
        elif not route.is_default and (conflict := underlay_conflict(network, underlay, hosts)) is not None:
            refused.append((route, f"it would override the underlay: {conflict}"))
        else:
            install.append(route)
    return RoutePlan(tuple(install), tuple(present), tuple(skipped), tuple(refused))


def needs_underlay_hosts(config: NetworkConfig | None) -> bool:
    """Whether planning config's routes asks where this node's underlay traffic goes: only routes other
    than default ones are checked against it (gathering it goes through every peer)."""
    return config is not None and any(not route.is_default for route in config.routes)


def underlay_conflict(network: IPNetwork, underlay: Iterable[UnderlayRoute], hosts: Iterable[IPAddress]) -> str | None:
    """Why routing `network` into the overlay would take traffic the underlay carries, or None."""
    for existing in underlay:
        target = ipaddress.ip_network(existing.target)
        if target.version != network.version:
            continue
        if target == network:
            return f"the same destination as the underlay route {existing}"
        # Inside a connected subnet, the member's own neighbours (its gateway among them) would be cut
        # off; a wider route leaves the connected one in force, by longest prefix.
        # (A default route on a point-to-point link is the rest of the world, not a subnet of neighbours.)
        if existing.gateway is None and target.prefixlen > 0 and network.subnet_of(target):  # type: ignore[arg-type]
            return f"it lies inside the directly connected underlay subnet {existing}"
        if existing.gateway is not None and ipaddress.ip_address(existing.gateway) in network:
            return f"it holds the underlay gateway {existing.gateway} (route {existing})"
    for host in hosts:
        if host.version == network.version and host in network:
            return f"it holds {host}, where this member's l2mesh traffic goes on the underlay (a peer or the controller)"
    return None
