"""The node's Transmit: datagrams through the shared non-blocking sender, frames to TAP fds."""

from __future__ import annotations

import os

from l2mesh.edge.node.tap import VNET_HEADER
from l2mesh.edge.udp import DatagramSender


class EdgeTransmit(DatagramSender):
    """TAP writes (every TAP carries a virtio_net_hdr); a full TAP queue drops the frame, as a switch port would."""

    def __init__(self, sock: object) -> None:
        super().__init__(sock)  # type: ignore[arg-type]
        self.tap_fds: dict[int, int] = {}
        self._write = os.write
        self._writev = os.writev

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
