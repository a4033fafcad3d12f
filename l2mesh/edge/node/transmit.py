"""The node's Transmit: datagrams through the shared non-blocking sender, frames to TAP fds."""

from __future__ import annotations

import os
from collections.abc import Callable

from l2mesh.edge.node.tap import VNET_HEADER
from l2mesh.edge.udp import DatagramSender
from l2mesh.wire.common import Endpoint


class EdgeTransmit(DatagramSender):
    """TAP writes (every TAP carries a virtio_net_hdr); a full TAP queue drops the frame, as a switch port would."""

    def __init__(self, sock: object) -> None:
        super().__init__(sock)  # type: ignore[arg-type]
        self.tap_fds: dict[int, int] = {}
        self._write = os.write
        self._writev = os.writev

    def divert(
        self,
        send: Callable[[bytes | memoryview, Endpoint], bool] | None,
        send_segments: Callable[[bytes | memoryview, int, Endpoint], bool] | None,
    ) -> None:
        """Offer datagrams to send/send_segments first (True: taken; the TCP fallback), or stop (None).

        Swapped in as instance attributes, so the UDP path costs nothing extra while no stream is in use.
        """
        if send is None or send_segments is None:
            self.__dict__.pop("send_datagram", None)
            self.__dict__.pop("send_segments", None)
            return
        udp_send, udp_segments = DatagramSender.send_datagram, DatagramSender.send_segments

        def send_datagram(data: bytes | memoryview, address: Endpoint) -> None:
            if not send(data, address):
                udp_send(self, data, address)

        def send_segments_(data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None:
            if not send_segments(data, segment_bytes, address):
                udp_segments(self, data, segment_bytes, address)

        self.send_datagram = send_datagram  # type: ignore[method-assign]
        self.send_segments = send_segments_  # type: ignore[method-assign]

    def write_frame(self, network_id: int, frame: bytes | memoryview) -> None:
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        try:
            self._writev(fd, (VNET_HEADER, frame))
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError:
            self.drops["tap_write_error"] += 1

    def write_offload_frame(self, network_id: int, vnet_frame: bytes | memoryview) -> None:
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        try:
            self._write(fd, vnet_frame)
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError:
            # EINVAL: a malformed virtio header from a peer; the kernel refuses it, we count it.
            self.drops["tap_write_error"] += 1
