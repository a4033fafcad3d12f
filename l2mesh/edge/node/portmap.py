"""Port mapping at the edge: finds the default gateway and carries NAT-PMP or PCP to it, on the reactor thread.

The protocols are in l2mesh/portmap/ (sans-IO); this file owns a small
non-blocking UDP socket of its own, connected to gateway:5351 (so the kernel
drops datagrams from anyone else, as RFC 6886 section 3.1 asks, and reports
a closed port as ECONNREFUSED), read by the reactor like any socket and
driven by the daemon's 100 ms tick. Nothing here is on the packet path: the
node's own UDP socket never waits on it. Only the default gateway is ever
spoken to; with no default route there is nothing to ask.

NAT-PMP is tried first, PCP if the router does not speak it: routers that
speak PCP nearly all speak NAT-PMP too, and its two small messages need
nothing from us (PCP wants our address in each request).
L2MESH_PORT_MAPPING=pcp,nat-pmp (names, in order) changes that, to test
or work around a router.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2mesh.edge.reactor import Reactor
from l2mesh.errors import L2meshError
from l2mesh.portmap.client import MappingClient
from l2mesh.portmap.natpmp import NatPmp
from l2mesh.portmap.pcp import Pcp
from l2mesh.portmap.protocol import MappingProtocol
from l2mesh.wire.common import Endpoint
from l2mesh.wire.natpmp import NATPMP_PORT

ROUTE_TABLE = Path("/proc/net/route")
GATEWAY_SCAN_S = 30.0  # a new default gateway (roaming, DHCP renewal) is noticed within this
READ_BATCH = 16
MAX_RESPONSE_BYTES = 1100  # PCP's largest message (RFC 6887 section 7)
RTF_UP = 0x1
RTF_GATEWAY = 0x2
PROTOCOLS_VARIABLE = "L2MESH_PORT_MAPPING"
DEFAULT_PROTOCOLS = ("nat-pmp", "pcp")

log = logging.getLogger("l2mesh.portmap")


def default_gateway(route_table: str) -> str | None:
    """The IPv4 default gateway in the text of /proc/net/route (the lowest metric wins), or None."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags, metric, mask = (int(fields[i], 16) for i in (1, 2, 3, 6, 7))
        except ValueError:
            continue
        if destination or mask or flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY or not gateway:
            continue
        # The kernel prints the address as a host-order integer: packing it the same way gives the bytes back.
        address = socket.inet_ntoa(struct.pack("=I", gateway))
        if best is None or metric < best[0]:
            best = (metric, address)
    return best[1] if best else None


def read_default_gateway() -> str | None:
    try:
        return default_gateway(ROUTE_TABLE.read_text())
    except OSError:
        return None


def protocol_order(text: str | None) -> tuple[str, ...]:
    """The protocols to try, in order, from L2MESH_PORT_MAPPING's text ("pcp,nat-pmp"); the default when unset."""
    if not text:
        return DEFAULT_PROTOCOLS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in DEFAULT_PROTOCOLS]
    if unknown or not names:
        raise L2meshError(f"{PROTOCOLS_VARIABLE}={text!r}: expected names among {', '.join(DEFAULT_PROTOCOLS)}")
    return names


class PortMapper:
    """Keeps a NAT-PMP or PCP mapping of the node's UDP port on the current default gateway."""

    def __init__(self, reactor: Reactor, internal_port: int,
                 find_gateway: Callable[[], str | None] = read_default_gateway,
                 clock: Callable[[], float] = time.monotonic, gateway_port: int = NATPMP_PORT) -> None:
        self.reactor = reactor
        self.internal_port = internal_port
        self.gateway_port = gateway_port  # 5351; another only in tests
        self._find_gateway = find_gateway
        self._clock = clock
        self.gateway: str | None = None
        self.client: MappingClient | None = None
        self._sock: socket.socket | None = None
        self._next_gateway_scan_s = 0.0
        self._advertised: Endpoint | None = None
        self.protocol_names = protocol_order(os.environ.get(PROTOCOLS_VARIABLE))  # checked at start-up

    # -- what the daemon asks -----------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint]:
        """The mapped endpoint, if one is held: to advertise first among the node's local endpoints."""
        endpoint = self.client.endpoint() if self.client is not None else None
        return [endpoint] if endpoint is not None else []

    def tick(self, now: float) -> bool:
        """Gateway changes, requests and resends; True when the mapped endpoint changed since the last tick."""
        if now >= self._next_gateway_scan_s:
            self._next_gateway_scan_s = now + GATEWAY_SCAN_S
            gateway = self._find_gateway()
            if gateway != self.gateway:
                self._use_gateway(gateway)
        if self.client is not None:
            for datagram in self.client.poll(now):
                self._send(datagram, now)
        endpoints = self.endpoints()
        endpoint = endpoints[0] if endpoints else None
        if endpoint == self._advertised:
            return False
        if endpoint is not None:
            log.info("port mapping: %s maps %s:%d to UDP port %d", self.gateway, *endpoint, self.internal_port)
        else:
            log.info("port mapping: no mapping held (%s)", self.client.last_result if self.client else "no gateway")
        self._advertised = endpoint
        return True

    def status(self, now: float) -> dict[str, Any]:
        if self.client is None:
            return {"protocol": self.protocol_names[0], "state": "no-gateway", "gateway": None, "external": None}
        return {**self.client.status(now), "gateway": self.gateway}

    def close(self) -> None:
        """On exit: ask the router to delete our mapping (one datagram, not waited for), close the socket."""
        self._use_gateway(None)

    # -- the socket ---------------------------------------------------------------------------------
    def _use_gateway(self, gateway: str | None) -> None:
        if self.client is not None and self._sock is not None:
            release = self.client.release()
            if release is not None:
                self._send(release, 0.0)
        if self._sock is not None:
            self.reactor.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock, self.client, self.gateway = None, None, gateway
        if gateway is None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((gateway, self.gateway_port))
        except OSError as exc:
            sock.close()
            log.warning("port mapping: cannot reach gateway %s: %s", gateway, exc.strerror)
            return
        self._sock = sock
        # PCP names our address in each request: the one the kernel chose for the route to the gateway.
        client_ip = sock.getsockname()[0]
        protocols: dict[str, MappingProtocol] = {
            "nat-pmp": NatPmp(self.internal_port), "pcp": Pcp(self.internal_port, client_ip),
        }
        self.client = MappingClient(self.internal_port, [protocols[name] for name in self.protocol_names])
        self.reactor.add_reader(sock.fileno(), self._readable)

    def _send(self, datagram: bytes, now: float) -> None:
        assert self._sock is not None and self.client is not None
        try:
            self._sock.send(datagram)
        except BlockingIOError:
            pass  # the resend timer tries again
        except OSError:
            # ECONNREFUSED from an earlier ICMP port unreachable, ENETUNREACH...: nobody to ask there.
            self.client.unreachable(now)

    def _readable(self) -> None:
        sock, client = self._sock, self.client
        if sock is None or client is None:
            return
        now = self._clock()
        for _ in range(READ_BATCH):
            try:
                # One byte more than any answer may have: a longer datagram is seen whole enough to be refused.
                data = sock.recv(MAX_RESPONSE_BYTES + 1)
            except BlockingIOError:
                return
            except OSError:
                client.unreachable(now)
                return
            client.datagram_received(data, now)
            # The next step (the mapping after the address) goes out now, not at the next tick.
            for datagram in client.poll(now):
                self._send(datagram, now)
