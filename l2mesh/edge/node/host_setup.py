"""What a joined network changes on the host beyond its TAP: managed routes, forwarding and NAT, DNS.

The daemon calls update() on the reactor thread whenever a network's config,
status or join flags change, and left() when it leaves. DNS sockets are
(re)bound right there, since the reactor thread drains them; everything
that runs programs or may wait on the kernel (routes, policy rules,
nftables, sysctl, resolvectl) is queued to one worker thread, in order, so
packets never wait for it. What the worker did is published per network as
a HostReport (replaced whole, so the reactor thread reads it without a
lock) for `l2mesh networks`.

On daemon exit everything is undone before the TAPs close (close()): routes,
policy rules, masquerade tables, the sysctls put back, resolved reverted.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2mesh.edge.node import resolved
from l2mesh.edge.node.forwarding import Forwarding, ForwardingSetup
from l2mesh.edge.node.kernel_routes import KernelRoutes
from l2mesh.edge.node.nftables import NftError, delete_table, tables_named
from l2mesh.edge.node.sysctl import KernelSettings
from l2mesh.edge.reactor import Reactor
from l2mesh.ids import format_network_id
from l2mesh.managed_routes import ManagedRoute
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import MemberChanges
from l2mesh.node.join_options import JoinOptions
from l2mesh.node.name_table import NameTable
from l2mesh.node.route_plan import plan_routes

if TYPE_CHECKING:
    from l2mesh.edge.node.dns_responder import DnsResponder

WORKER_CLOSE_TIMEOUT_S = 15.0
log = logging.getLogger("l2mesh.host")


@dataclass(frozen=True)
class HostReport:
    """One network's host set-up as last carried out (what `l2mesh networks` shows)."""

    routes: tuple[ManagedRoute, ...] = ()
    refused: tuple[tuple[ManagedRoute, str], ...] = ()
    forwarding: bool = False
    resolver: str | None = None  # how the host's resolver learns the domain, or why it does not

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": [r.to_json() for r in self.routes],
            "routes_refused": [{**r.to_json(), "reason": why} for r, why in self.refused],
            "forwarding": self.forwarding,
            "resolver": self.resolver,
        }


@dataclass
class _NetworkHost:
    """The worker's memory of one network: what it logged, what it told resolved."""

    logged: set[tuple[ManagedRoute, str]] = field(default_factory=set)
    resolver_key: tuple[str, tuple[str, ...], str] | None = None
    resolver_problem_logged: bool = False


class HostSetup:
    def __init__(self, node_id: int, port: int, sock: socket.socket, reactor: Reactor) -> None:
        self.node_id = node_id
        self.port = port
        self.reactor = reactor
        self.settings = KernelSettings()
        self.routes = KernelRoutes(port, sock, self.settings)
        self.forwarding = Forwarding(port, self.settings)
        self.reports: dict[int, HostReport] = {}
        self.responders: dict[int, DnsResponder] = {}  # reactor thread only
        self._networks: dict[int, _NetworkHost] = {}  # worker thread only
        self._resolver_problem: str | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run_jobs, name="l2mesh-host-setup", daemon=True)
        self._worker.start()
        self._submit(self._start)

    # -- reactor thread ----------------------------------------------------------------------------------
    def update(
        self, network_id: int, tap_name: str, config: NetworkConfig | None, me: MemberConfig | None, options: JoinOptions,
        underlay_hosts: tuple[str, ...], changes: MemberChanges | None = None,
    ) -> None:
        """The network's config (None: not authorized now), flags or peers changed: make the host match.
        me: this node as config lists it (the caller finds it by id: no search through the member list);
        changes: what a delta changed, when config is its result (names then follow in time for those)."""
        addresses = [str(ipaddress.ip_interface(ip).ip) for ip in me.ips] if me is not None else []
        self._serve_dns(network_id, config if addresses else None, addresses, changes)
        self._submit(lambda: self._apply(network_id, tap_name, config, me, options, underlay_hosts))

    def left(self, network_id: int) -> None:
        self._serve_dns(network_id, None, [])
        self._submit(lambda: self._remove(network_id))

    def report(self, network_id: int) -> dict[str, Any]:
        responder = self.responders.get(network_id)
        return {
            **self.reports.get(network_id, HostReport()).to_json(),
            "dns": list(responder.listening) if responder is not None else [],
        }

    def close(self) -> None:
        """Undo everything (daemon exit): wait for the worker, then close the DNS sockets."""
        self._submit(self._close_all)
        self._jobs.put(None)
        self._worker.join(WORKER_CLOSE_TIMEOUT_S)
        if self._worker.is_alive():
            log.error("host set-up did not finish undoing within %g s", WORKER_CLOSE_TIMEOUT_S)
        for responder in self.responders.values():
            responder.close()
        self.responders.clear()

    def _serve_dns(
        self, network_id: int, config: NetworkConfig | None, addresses: list[str], changes: MemberChanges | None = None
    ) -> None:
        responder = self.responders.get(network_id)
        if config is not None and responder is not None and responder.addresses == addresses:
            # A rename answers from the next query on.
            table = responder.table
            domain_before = table.domain
            if table.config is config:
                return
            held = table.config
            if changes is not None and changes.config is config and held is not None and changes.applies_to(held):
                table.apply(changes)  # a delta: the names of the members it changed, not all of them again
            else:
                table = responder.table = NameTable.from_config(config)
            if table.domain != domain_before:
                log.info("network %s: DNS for %s (was %s)", format_network_id(network_id), table.domain, domain_before)
            return
        if responder is not None:
            for sock in responder.sockets:
                self.reactor.remove_reader(sock.fileno())
            responder.close()
            del self.responders[network_id]
        if config is None:
            return
        # Here, not at the top: dnspython stays out of a daemon that has no network to answer for.
        from l2mesh.edge.node.dns_responder import DnsResponder

        responder = self.responders[network_id] = DnsResponder(addresses, NameTable.from_config(config))
        for sock in responder.sockets:
            self.reactor.add_reader(sock.fileno(), responder.drainer(sock))
        if responder.listening:
            log.info(
                "network %s: DNS for %s on %s", format_network_id(network_id), config.effective_dns_domain,
                ", ".join(responder.listening),
            )

    # -- worker thread --------------------------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _run_jobs(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # one failed step must not stop the ones queued behind it
                log.exception("host set-up step failed")

    def _start(self) -> None:
        """Take away what a killed daemon on this port left behind, and see whether resolved is there."""
        self.routes.sweep()
        for table in tables_named(f"l2mesh_{self.port}_"):  # masquerade tables and the mark restore
            try:
                delete_table(table)
            except NftError as exc:
                log.warning("%s", exc)
        self._resolver_problem = resolved.resolved_problem()

    def _apply(
        self, network_id: int, tap_name: str, config: NetworkConfig | None, me: MemberConfig | None, options: JoinOptions,
        hosts: tuple[str, ...],
    ) -> None:
        network = self._networks.setdefault(network_id, _NetworkHost())
        active = self.forwarding.active.get(network_id)
        if me is not None:
            subnets = tuple(sorted({str(ipaddress.ip_interface(ip).network) for ip in me.ips}))
        else:
            # No config now (not yet, or deauthorized): the roles are the join's, they stay until leave.
            subnets = active.overlay_subnets if active is not None else ()
        self.forwarding.apply(network_id, ForwardingSetup(tap_name, subnets, options))
        # The underlay is read only for routes to plan: reading it needs pyroute2, which most networks never load.
        underlay = self.routes.underlay(tap_name) if config is not None and config.routes else ()
        plan = plan_routes(config, self.node_id, options, underlay, hosts)
        failed = self.routes.sync(network_id, tap_name, plan.install)
        refused = plan.refused + tuple((route, f"not installed: {why}") for route, why in failed.items())
        self._log_plan(network_id, network, plan.skipped, refused)
        installed = tuple(r for r in plan.in_force if r not in failed)
        resolver = self._tell_resolver(network_id, network, tap_name, config, me.ips if me is not None else ())
        self.reports[network_id] = HostReport(installed, refused, self.forwarding.is_forwarding(network_id), resolver)

    def _log_plan(
        self, network_id: int, network: _NetworkHost,
        skipped: tuple[tuple[ManagedRoute, str], ...], refused: tuple[tuple[ManagedRoute, str], ...],
    ) -> None:
        """Each refusal once (warning) and each skip once (info), for as long as it lasts."""
        now = {*skipped, *refused}
        for route, why in refused:
            if (route, why) not in network.logged:
                log.warning("network %s: route %s refused: %s", format_network_id(network_id), route, why)
        for route, why in skipped:
            if (route, why) not in network.logged:
                log.info("network %s: route %s not installed here: %s", format_network_id(network_id), route, why)
        network.logged = now

    def _tell_resolver(
        self, network_id: int, network: _NetworkHost, tap_name: str, config: NetworkConfig | None, ips: tuple[str, ...]
    ) -> str | None:
        if config is None or not ips:
            if network.resolver_key is not None:
                resolved.revert_link(network.resolver_key[0])
                network.resolver_key = None
            return None
        domain = config.effective_dns_domain
        if self._resolver_problem is not None:
            if not network.resolver_problem_logged:
                network.resolver_problem_logged = True
                log.info("network %s: the host's resolver is not told about %s: %s (README, \"DNS\", has the one-line set-up)",
                         format_network_id(network_id), domain, self._resolver_problem)
            return f"not set: {self._resolver_problem} (see README, DNS)"
        key = (tap_name, tuple(str(ipaddress.ip_interface(ip).ip) for ip in ips), domain)
        if key != network.resolver_key:
            problem = resolved.set_link_dns(tap_name, key[1], domain)
            if problem is not None:
                log.warning("network %s: cannot hand ~%s to systemd-resolved: %s", format_network_id(network_id), domain, problem)
                return f"not set: {problem}"
            network.resolver_key = key
            log.info("network %s: systemd-resolved asks %s for ~%s on %s", format_network_id(network_id), ", ".join(key[1]), domain, tap_name)
        return f"systemd-resolved: ~{domain} on {tap_name}"

    def _remove(self, network_id: int) -> None:
        self.routes.sync(network_id, None, ())
        self.forwarding.remove(network_id)
        network = self._networks.pop(network_id, None)
        if network is not None and network.resolver_key is not None:
            resolved.revert_link(network.resolver_key[0])
        self.reports.pop(network_id, None)

    def _close_all(self) -> None:
        for network_id in sorted(set(self._networks) | set(self.forwarding.active) | set(self.routes.installed)):
            self._remove(network_id)
