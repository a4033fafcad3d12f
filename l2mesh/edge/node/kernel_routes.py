"""Managed routes in the kernel (pyroute2, netlink): a network's routes on its TAP, and the default-route policy.

pyroute2 rather than `ip route`: it speaks netlink without a process per
change, and reports errors as codes (EEXIST, ESRCH) instead of text to parse.
It is imported on first use, by a network with routes to change: it costs a
daemon over 20 MiB of memory, and most networks have none (a start-up sweep
finds nothing to remove with one rule dump through netlink.py).

Non-default routes go in the main table with protocol 147 (`ip route show
proto 147` lists them). A default route (0.0.0.0/0, ::/0) goes in a table of
its own, reached by two policy rules, as WireGuard's wg-quick does it:

    32700: from all lookup main suppress_prefixlength 0     # every route but main's default keeps winning
    32701: not from all fwmark PORT lookup PORT            # the rest takes the overlay's default route

and the daemon's UDP socket carries the mark PORT (SO_MARK), so its own
traffic to peers, roots and the controller skips the overlay's default and
leaves on the underlay as before. A member with strict reverse-path
filtering would drop the peers' replies (their source now routes into the
overlay), so, again as wg-quick does, conntrack remembers the mark of the
daemon's flows and gives it back to their replies (nft table
l2mesh_PORT_mark) and net.ipv4.conf.all.src_valid_mark lets the reverse-path
check see it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from l2mesh.edge.node.netlink import RtNetlink
from l2mesh.edge.node.nftables import NftError, delete_table, load_table
from l2mesh.edge.node.sysctl import KernelSettings
from l2mesh.ids import format_network_id
from l2mesh.managed_routes import ManagedRoute
from l2mesh.node.route_plan import UnderlayRoute

ROUTE_PROTOCOL = 147  # rtnetlink protocol of the routes l2mesh makes (unassigned in /etc/iproute2/rt_protos)
MAIN_TABLE = 254
RTN_UNICAST = 1
RT_SCOPE_LINK = 253
SUPPRESS_RULE_PRIORITY = 32700
MARK_RULE_PRIORITY = 32701
FIB_RULE_INVERT = 0x2  # linux/fib_rules.h: the rule matches when its selector does not ("not fwmark")
SO_MARK = getattr(socket, "SO_MARK", 36)
SRC_VALID_MARK = "net/ipv4/conf/all/src_valid_mark"

if TYPE_CHECKING:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("l2mesh.routes")


class RouteInstallError(Exception):
    """The kernel refused a route (its text says why, for the log and `l2mesh networks`)."""


def _iproute() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_error() -> type[NetlinkError]:
    """pyroute2's error class, for except clauses (evaluated only when something was raised)."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


class KernelRoutes:
    """The routes this daemon made, per network; only the host-setup worker thread calls it."""

    def __init__(self, port: int, sock: socket.socket, settings: KernelSettings) -> None:
        self.table = port  # the policy table and the mark share the port number, as wg-quick's do
        self.mark = port
        self.sock = sock
        self.settings = settings
        self.installed: dict[int, dict[ManagedRoute, int]] = {}  # network id -> route -> TAP ifindex
        self._policy_families: set[int] = set()

    # -- reading --------------------------------------------------------------------------------------
    def underlay(self, tap_name: str) -> list[UnderlayRoute]:
        """The main table's unicast routes not on this TAP and not made by l2mesh (the planner's "underlay")."""
        out = []
        with _iproute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for family in (socket.AF_INET, socket.AF_INET6):
                for route in ipr.get_routes(family=family, table=MAIN_TABLE):
                    device = names.get(route.get_attr("RTA_OIF"))
                    if route["type"] != RTN_UNICAST or route["proto"] == ROUTE_PROTOCOL or device == tap_name or device is None:
                        continue
                    destination = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                    target = ipaddress.ip_network(f"{destination}/{route['dst_len']}", strict=False)
                    if target.is_link_local:
                        continue  # fe80::/64 on every link: nobody routes it into an overlay
                    out.append(UnderlayRoute(str(target), route.get_attr("RTA_GATEWAY"), device))
        return out

    # -- changing -----------------------------------------------------------------------------------------
    def sync(self, network_id: int, tap_name: str | None, wanted: Iterable[ManagedRoute]) -> dict[ManagedRoute, str]:
        """Make the network's routes exactly `wanted` (none when tap_name is None); the ones the kernel refused, and why."""
        wanted = set(wanted) if tap_name is not None else set()
        if not wanted and network_id not in self.installed:
            return {}  # the common case, a network without routes: no netlink (and no pyroute2) at all
        installed = self.installed.setdefault(network_id, {})
        failed: dict[ManagedRoute, str] = {}
        with _iproute() as ipr:
            for route in sorted(set(installed) - wanted):
                self._delete(ipr, route, installed.pop(route))
                log.info("network %s: route %s removed", format_network_id(network_id), route)
            links = ipr.link_lookup(ifname=tap_name) if tap_name is not None and wanted - set(installed) else []
            for route in sorted(wanted - set(installed)):
                if not links:
                    failed[route] = f"interface {tap_name} is gone"
                    continue
                try:
                    self._add(ipr, route, links[0])
                except RouteInstallError as exc:
                    failed[route] = str(exc)
                    continue
                installed[route] = links[0]
                where = f"table {self.table}, behind the policy rules" if route.is_default else "main table"
                log.info("network %s: route %s installed on %s (%s)", format_network_id(network_id), route, tap_name, where)
        if not installed:
            del self.installed[network_id]
        self._sync_policy()
        return failed

    def close(self) -> None:
        for network_id in list(self.installed):
            self.sync(network_id, None, ())

    def _route_fields(self, route: ManagedRoute, ifindex: int) -> dict[str, object]:
        """The netlink fields of a route, the same for adding and deleting (a delete must match its scope)."""
        fields: dict[str, object] = {
            "family": _family(route.network.version),
            "dst": route.target,
            "oif": ifindex,
            "table": self.table if route.is_default else MAIN_TABLE,
            "proto": ROUTE_PROTOCOL,
        }
        if route.via is not None:
            fields["gateway"] = route.via
        elif route.network.version == 4:
            fields["scope"] = RT_SCOPE_LINK  # on-link, as `ip route add CIDR dev TAP` makes it
        return fields

    def _add(self, ipr: IPRoute, route: ManagedRoute, ifindex: int) -> None:
        if route.is_default:
            self._ensure_policy(route.network.version)
        try:
            ipr.route("add", **self._route_fields(route, ifindex))
        except _netlink_error() as exc:
            if exc.code == errno.EEXIST:
                where = "another network's default route" if route.is_default else "a route to the same destination"
                raise RouteInstallError(f"{where} is already in force") from None
            raise RouteInstallError(f"the kernel refused it: {exc.args[-1] if exc.args else exc}") from None

    def _delete(self, ipr: IPRoute, route: ManagedRoute, ifindex: int) -> None:
        try:
            ipr.route("del", **self._route_fields(route, ifindex))
        except _netlink_error() as exc:
            if exc.code not in (errno.ESRCH, errno.ENODEV):  # gone with its TAP already: what we wanted
                log.warning("cannot remove route %s: %s", route, exc)

    # -- the default route's policy ----------------------------------------------------------------------------
    def _ensure_policy(self, version: int) -> None:
        """The policy a default route of this IP version needs; all of it, or none of it and RouteInstallError."""
        family = _family(version)
        if family in self._policy_families:
            return
        try:
            if family == socket.AF_INET:
                # Before any rule sends traffic into the overlay: the daemon's own UDP must already carry the mark.
                self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)
                self.settings.hold(SRC_VALID_MARK, "1", owner="default-route")
                load_table(self._mark_table(), _MARK_RESTORE.format(mark=self.mark))
            with _iproute() as ipr:
                for rule in self._rules(family):
                    try:
                        ipr.rule("add", **rule)
                    except _netlink_error() as exc:
                        if exc.code != errno.EEXIST:
                            raise
        except (OSError, NftError, _netlink_error()) as exc:
            self._remove_policy(family)  # what did go in comes out again: the daemon's UDP unmarked, no rules
            raise RouteInstallError(f"the policy that keeps l2mesh's own traffic on the underlay could not be set: {exc}") from None
        self._policy_families.add(family)

    def _sync_policy(self) -> None:
        """Take the policy away for a family once no default route of it is left."""
        in_use = {_family(route.network.version) for routes in self.installed.values() for route in routes if route.is_default}
        for family in sorted(self._policy_families - in_use):
            self._remove_policy(family)
            self._policy_families.discard(family)

    def _remove_policy(self, family: int) -> None:
        self._remove_policy_rules(family)
        if family == socket.AF_INET:
            try:
                delete_table(self._mark_table())
            except NftError as exc:
                log.warning("%s", exc)
            self.settings.release("default-route")
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, 0)
            except OSError:
                pass  # never set (no CAP_NET_ADMIN), or the socket is closed at exit: unmarked either way

    def _rules(self, family: int) -> list[dict[str, object]]:
        return [
            {"family": family, "table": MAIN_TABLE, "priority": SUPPRESS_RULE_PRIORITY, "suppress_prefixlen": 0},
            {"family": family, "table": self.table, "priority": MARK_RULE_PRIORITY, "fwmark": self.mark,
             "fwmask": 0xFFFFFFFF, "flags": FIB_RULE_INVERT},
        ]

    def _mark_table(self) -> str:
        return f"l2mesh_{self.table}_mark"

    def sweep(self) -> None:
        """Take away the policy rules a killed daemon on this port left (its nft tables: host_setup's sweep)."""
        for family in (socket.AF_INET, socket.AF_INET6):
            self._remove_policy_rules(family)

    def _remove_policy_rules(self, family: int) -> None:
        """This daemon's mark rule, and the shared suppress rule unless another daemon's mark rule still needs it."""
        suppress, mine = self._rules(family)
        with RtNetlink() as netlink:
            priorities = set(netlink.rule_priorities(family))
        if not priorities & {SUPPRESS_RULE_PRIORITY, MARK_RULE_PRIORITY}:
            return  # none of them there (every start's sweep, usually)
        with _iproute() as ipr:
            _delete_rule(ipr, mine)
            others = [r for r in ipr.get_rules(family=family) if r.get_attr("FRA_PRIORITY") == MARK_RULE_PRIORITY]
            if not others:
                _delete_rule(ipr, suppress)


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _delete_rule(ipr: IPRoute, rule: dict[str, object]) -> None:
    try:
        ipr.rule("del", **rule)
    except _netlink_error() as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH):
            log.warning("cannot remove policy rule %s: %s", rule, exc)


# wg-quick's: the mark of the daemon's UDP flows is kept in conntrack and restored on their replies.
_MARK_RESTORE = """\
    chain premangle {{
        type filter hook prerouting priority mangle; policy accept;
        meta l4proto udp meta mark set ct mark
    }}
    chain postmangle {{
        type filter hook postrouting priority mangle; policy accept;
        meta l4proto udp meta mark {mark} ct mark set meta mark
    }}
"""
