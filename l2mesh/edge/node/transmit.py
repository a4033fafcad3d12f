"""The node's Transmit: datagrams through the shared non-blocking sender, frames to TAP fds."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from l2mesh.edge.node.tap import VNET_HEADER, uso_wanted
from l2mesh.edge.udp import DatagramSender
from l2mesh.node.udp_coalesce import VNET_GSO_UDP_L4, VNET_HEADER_BYTES, UdpCoalescer, split_uso
from l2mesh.wire.common import Endpoint


class EdgeTransmit(DatagramSender):
    """TAP writes (every TAP carries a virtio_net_hdr); a full TAP queue drops the frame, as a switch port would.

    Between hold_frames() and release_frames() (one drain of the UDP socket),
    consecutive datagrams of one UDP flow to one TAP leave as one UDP_L4
    super-frame (l2mesh.node.udp_coalesce); L2MESH_NO_USO=1 turns that off.
    """

    def __init__(self, sock: object) -> None:
        super().__init__(sock)  # type: ignore[arg-type]
        self.tap_fds: dict[int, int] = {}
        self._write = os.write
        self._writev = os.writev
        self.coalescer = UdpCoalescer(self._write_vnet_frame)
        self.coalescing = uso_wanted()
        self._holding_frames = False
        self.frames_written = 0  # frames handed to write_frame/write_offload_frame (frames_batched's measure)
        self._uso_refused: set[int] = set()  # TAP fds whose kernel refused a UDP_L4 frame (before 6.2)

    def hold_frames(self) -> None:
        self._holding_frames = self.coalescing

    def release_frames(self) -> None:
        self._holding_frames = False
        self.coalescer.flush()

    def frames_batched(self, drain: Callable[[], None]) -> Callable[[], None]:
        """drain with frames held for coalescing while it runs, and written before it returns.

        Only after a drain that wrote more than one frame: a lone datagram (a DNS
        query, a game tick) is written at once, not after the receive that finds
        the socket empty, which would sit on its path; a stream's drains batch.
        """
        hold, release = self.hold_frames, self.release_frames
        frames_last_drain = 0

        def drain_batched() -> None:
            nonlocal frames_last_drain
            before = self.frames_written
            batching = frames_last_drain > 1
            if batching:
                hold()
            try:
                drain()
            finally:
                if batching:
                    release()
                frames_last_drain = self.frames_written - before

        return drain_batched

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
        self.frames_written += 1
        if self._holding_frames and self.coalescer.add(network_id, frame):
            return
        self._write_vnet_frame(network_id, VNET_HEADER, frame)

    def write_offload_frame(self, network_id: int, vnet_frame: bytes | memoryview) -> None:
        self.frames_written += 1
        if self._holding_frames and self.coalescer.add(network_id, vnet_frame, VNET_HEADER_BYTES):
            return
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        if fd in self._uso_refused and len(vnet_frame) > 1 and vnet_frame[1] == VNET_GSO_UDP_L4:
            self._write_datagrams_of(fd, vnet_frame[:VNET_HEADER_BYTES], vnet_frame[VNET_HEADER_BYTES:])
            return
        try:
            self._write(fd, vnet_frame)
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError as exc:
            if exc.errno == errno.EINVAL and len(vnet_frame) > 1 and vnet_frame[1] == VNET_GSO_UDP_L4:
                # A peer's USO super-frame (a program there sent with UDP_SEGMENT) on a kernel before 6.2,
                # or a malformed one: its datagrams one by one. Only our own frames teach us the kernel's age.
                self._write_datagrams_of(fd, vnet_frame[:VNET_HEADER_BYTES], vnet_frame[VNET_HEADER_BYTES:])
                return
            # EINVAL: a malformed virtio header from a peer; the kernel refuses it, we count it.
            self.drops["tap_write_error"] += 1

    def _write_vnet_frame(self, network_id: int, vnet: bytes | memoryview, frame: bytes | bytearray | memoryview) -> None:
        """A frame behind a virtio header: a plain one, or the coalescer's output (as it came, or a UDP_L4 super-frame)."""
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        try:
            self._writev(fd, (vnet, frame))
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError as exc:
            if exc.errno == errno.EINVAL and vnet[1] == VNET_GSO_UDP_L4:
                # Our own super-frames are well formed: this kernel (before 6.2) takes no UDP_L4 frames.
                self.coalescing = self._holding_frames = False
                if fd not in self._uso_refused:
                    self._uso_refused.add(fd)
                    self.drops["tap_refused_uso"] += 1
                self._write_datagrams_of(fd, vnet, frame)
                return
            self.drops["tap_write_error"] += 1

    def _write_datagrams_of(self, fd: int, vnet: bytes | memoryview, frame: bytes | bytearray | memoryview) -> None:
        """A UDP_L4 super-frame the kernel refused, written as its datagrams one by one."""
        datagrams = split_uso(vnet, frame)
        if datagrams is None:
            self.drops["tap_write_error"] += 1
            return
        for datagram_vnet, datagram in datagrams:
            try:
                self._writev(fd, (datagram_vnet, datagram))
            except BlockingIOError:
                self.drops["tap_queue_full"] += 1
            except OSError:
                self.drops["tap_write_error"] += 1
