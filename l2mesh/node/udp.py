"""The node's Transmit: datagrams through the shared non-blocking sender, frames to TAP fds."""

from __future__ import annotations

import os

from l2mesh.udp import DatagramSender


class EdgeTransmit(DatagramSender):
    """A full TAP queue drops the frame, as a switch port would (TCP above recovers)."""

    def __init__(self, sock: object) -> None:
        super().__init__(sock)  # type: ignore[arg-type]
        self.tap_fds: dict[int, int] = {}
        self._write = os.write

    def write_frame(self, network_id: int, frame: bytes | memoryview) -> None:
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        try:
            self._write(fd, frame)
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError:
            self.drops["tap_write_error"] += 1
