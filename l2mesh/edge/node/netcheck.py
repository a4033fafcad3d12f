"""`l2mesh netcheck` at the edge: which servers to ask (from the node's state directory and the command line),
and one UDP socket driven by select until every server answered or time ran out (l2mesh/netcheck.py decides).

It runs without the daemon, from a socket of its own on an ephemeral
port (as `tailscale netcheck` does): what it measures is the NAT's
behaviour, which is the same for the daemon's port, not the daemon.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from pathlib import Path
from typing import Any

import trio

from l2mesh.edge.node.state_dir import NodeState
from l2mesh.edge.roots import load_root_pins, resolve_endpoint
from l2mesh.errors import L2meshError
from l2mesh.ids import controller_of
from l2mesh.netcheck import Netcheck, Server
from l2mesh.ports import DEFAULT_CONTROLLER_PORT, DEFAULT_NODE_PORT
from l2mesh.root_spec import RootSpec

TICK_S = 0.02
MAX_DATAGRAM_BYTES = 65536


def servers_from_state(state_dir: Path) -> list[Server]:
    """The controllers of the joined networks (where given at join) and every root whose keys the daemon pinned."""
    if not state_dir.is_dir():
        return []
    state = NodeState(state_dir)
    servers = []
    for network_id, joined in sorted(state.load_joined().items()):
        if joined.controller is not None:
            controller_id = controller_of(network_id)
            servers.append(Server("controller", joined.controller, controller_id, state.load_controller(controller_id)))
    for endpoint, identity in sorted(load_root_pins(state_dir).items()):
        servers.append(Server("root", endpoint, identity.node_id, identity))
    return servers


def servers_from_specs(controllers: list[RootSpec], roots: list[RootSpec]) -> list[Server]:
    """Servers named on the command line (`ID@HOST:PORT`; a root may be `HOST:PORT`), host names resolved."""

    async def resolve() -> list[Server]:
        found = []
        for role, specs, port in (("controller", controllers, DEFAULT_CONTROLLER_PORT), ("root", roots, DEFAULT_NODE_PORT)):
            for spec in specs:
                if role == "controller" and spec.expected_id is None:
                    raise L2meshError(f"controller {spec}: give its id, as ID@HOST:PORT (the first 10 digits of a network id)")
                endpoint = await resolve_endpoint(f"{spec.host}:{spec.port}", port, role)
                found.append(Server(role, endpoint, spec.expected_id))
        return found

    return trio.run(resolve) if controllers or roots else []


def merged(*groups: list[Server]) -> list[Server]:
    """One server per address, the first named winning (the command line before the state directory)."""
    by_endpoint: dict[tuple[str, int], Server] = {}
    for group in groups:
        for server in group:
            by_endpoint.setdefault(server.endpoint, server)
    return list(by_endpoint.values())


def run_netcheck(servers: list[Server], timeout_s: float) -> dict[str, Any]:
    """Ask every server from one IPv4 socket for up to timeout_s; the report (l2mesh.netcheck.Netcheck.report)."""
    for server in servers:
        if ipaddress.ip_address(server.endpoint[0]).version != 4:
            server.error = "IPv6 servers are not asked yet"
    check = Netcheck(servers)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)

        def send(outgoing: list[tuple[bytes, tuple[str, int]]]) -> None:
            for data, endpoint in outgoing:
                try:
                    sock.sendto(data, endpoint)
                except OSError as exc:
                    server = check.by_endpoint[endpoint]
                    server.error = f"cannot send: {exc.strerror or exc}"

        deadline_s = time.monotonic() + timeout_s
        send(check.tick(time.monotonic()))
        while not check.done:
            left_s = deadline_s - time.monotonic()
            if left_s <= 0:
                break
            readable, _, _ = select.select([sock], [], [], min(TICK_S, left_s))
            while readable:
                try:
                    data, source = sock.recvfrom(MAX_DATAGRAM_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue  # an ICMP error for an earlier send (port unreachable): that server stays silent
                send(check.datagram(data, (source[0], source[1]), time.monotonic()))
            send(check.tick(time.monotonic()))
        report = check.report()
        report["local_port"] = sock.getsockname()[1]
    return report
