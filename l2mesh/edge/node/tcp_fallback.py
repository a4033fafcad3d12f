"""The member's TCP fallback: where no UDP gets out, reach the roots over TCP and carry their datagrams there.

A root that has not answered over UDP within FALLBACK_AFTER_S of being given
(or for UDP_SILENT_S after it did) is reached over TCP at the same host and
port number (RootStream: an HTTP/1.1 upgrade, then length-prefixed
datagrams). While a stream is open, datagrams to the root's UDP address go
into it, and what comes out of it is handed to the core as if it had come
from that address: the core neither knows nor cares, and since no peer is
reachable directly, every peer ends up relayed through the root. Every
UDP_RETRY_S an identity request still goes to the root over plain UDP; the
first UDP answer from the root closes the stream and traffic is back on UDP.

The diverting send and the watching receive are swapped in only while some
stream is in use, so a node on UDP pays nothing for this on its packet path.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from functools import partial

from l2mesh.edge.node.root_stream import RootStream
from l2mesh.edge.node.transmit import EdgeTransmit
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.roots import endpoint_text
from l2mesh.node.core import NodeCore
from l2mesh.wire.common import Endpoint
from l2mesh.wire.packets import ANY_NODE_ID, IdentityRequest

FALLBACK_AFTER_S = 5.0
UDP_SILENT_S = 15.0
UDP_RETRY_S = 10.0
UDP_PROBE = IdentityRequest.build({"node_id": ANY_NODE_ID})

log = logging.getLogger("l2mesh.daemon")


class TcpFallback:
    def __init__(
        self,
        core: NodeCore,
        transmit: EdgeTransmit,
        sock: socket.socket,
        reactor: Reactor,
        udp_reader: Callable[[], None],
        make_udp_reader: Callable[[Callable[[memoryview, Endpoint, float], None]], Callable[[], None]],
        started_s: float,
    ) -> None:
        self.core = core
        self.transmit = transmit
        self.sock = sock
        self.reactor = reactor
        self.started_s = started_s
        self.streams: dict[Endpoint, RootStream] = {}
        self._registered_fd: dict[Endpoint, int] = {}
        self._next_udp_probe_s: dict[Endpoint, float] = {}
        self._udp_heard_s: dict[Endpoint, float] = {}
        self._plain_reader = udp_reader
        self._watching_reader = make_udp_reader(self._udp_datagram)
        self._diverting = False

    # -- on the reactor thread, each tick -------------------------------------------------------------
    def tick(self, now: float) -> None:
        for link in self.core.roots.links:
            endpoint = link.endpoint
            stream = self.streams.get(endpoint)
            if stream is None:
                if self._udp_silent(endpoint, now):
                    log.warning("root %s: no answer over UDP; trying TCP to the same address", endpoint_text(endpoint))
                    stream = self.streams[endpoint] = RootStream(endpoint, endpoint)
                else:
                    continue
            stream.tick(now)
            self._sync_fd(endpoint, stream)
            link.tcp = stream.is_open
            if now >= self._next_udp_probe_s.get(endpoint, 0.0):
                self._next_udp_probe_s[endpoint] = now + UDP_RETRY_S
                try:
                    self.sock.sendto(UDP_PROBE, endpoint)  # past the diversion: does UDP work again?
                except OSError:
                    pass
        self._divert(any(s.is_open for s in self.streams.values()))

    def _udp_silent(self, endpoint: Endpoint, now: float) -> bool:
        heard = self._udp_heard_s.get(endpoint)
        link = next((li for li in self.core.roots.links if li.endpoint == endpoint), None)
        peer = self.core.peers.get(link.node_id) if link is not None and link.node_id is not None else None
        if peer is not None and peer.last_rx_s is not None:
            heard = max(heard or peer.last_rx_s, peer.last_rx_s)
        if heard is None:
            return now - self.started_s >= FALLBACK_AFTER_S
        return now - heard >= UDP_SILENT_S

    def _sync_fd(self, endpoint: Endpoint, stream: RootStream) -> None:
        fd = stream.fileno()
        old = self._registered_fd.get(endpoint, -1)
        if fd != old:
            if old >= 0:
                self.reactor.remove_reader(old)
            if fd >= 0:
                self.reactor.add_reader(fd, partial(self._readable, endpoint))
            self._registered_fd[endpoint] = fd
        if fd >= 0:
            self.reactor.set_writer(fd, partial(self._writable, endpoint) if stream.wants_write else None)

    # -- stream events ---------------------------------------------------------------------------------
    def _readable(self, endpoint: Endpoint) -> None:
        stream = self.streams.get(endpoint)
        if stream is None:
            return
        now = time.monotonic()
        was_open = stream.is_open
        for datagram in stream.on_readable(now):
            self.core.datagram_received(memoryview(datagram), endpoint, now)
        if stream.is_open and not was_open:
            log.info("root %s: reached over TCP", endpoint_text(endpoint))
            self._divert(True)
        self._sync_fd(endpoint, stream)

    def _writable(self, endpoint: Endpoint) -> None:
        stream = self.streams.get(endpoint)
        if stream is not None:
            stream.on_writable(time.monotonic())
            self._sync_fd(endpoint, stream)

    def _udp_datagram(self, data: memoryview, source: Endpoint, now: float) -> None:
        """The UDP receive while streams are in use: an answer from a root over UDP ends its stream."""
        stream = self.streams.get(source)
        if stream is not None:
            self._udp_heard_s[source] = now
            log.info("root %s: UDP works again; leaving TCP", endpoint_text(source))
            self._close(source)
            self._divert(any(s.is_open for s in self.streams.values()))
        self.core.datagram_received(data, source, now)

    def _close(self, endpoint: Endpoint) -> None:
        stream = self.streams.pop(endpoint)
        fd = self._registered_fd.pop(endpoint, -1)
        if fd >= 0:
            self.reactor.remove_reader(fd)
        stream.close()
        link = next((li for li in self.core.roots.links if li.endpoint == endpoint), None)
        if link is not None:
            link.tcp = False

    # -- the swap ---------------------------------------------------------------------------------------
    def _divert(self, on: bool) -> None:
        if on == self._diverting:
            return
        self._diverting = on
        self.transmit.divert(self._send_diverted if on else None, self._send_segments_diverted if on else None)
        self.reactor.add_reader(self.sock.fileno(), self._watching_reader if on else self._plain_reader)

    def _send_diverted(self, data: bytes | memoryview, address: Endpoint) -> bool:
        stream = self.streams.get(address)
        if stream is None or not stream.is_open:
            return False
        stream.send(data)
        return True

    def _send_segments_diverted(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> bool:
        stream = self.streams.get(address)
        if stream is None or not stream.is_open:
            return False
        stream.send_segments(data, segment_bytes)
        return True

    def close(self) -> None:
        for endpoint in list(self.streams):
            self._close(endpoint)
