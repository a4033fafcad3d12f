"""A Transmit for sans-IO tests: records datagrams and TAP writes instead of making system calls."""

from __future__ import annotations

Endpoint = tuple[str, int]


class RecordingTransmit:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Endpoint]] = []
        self.frames: list[tuple[int, bytes]] = []
        # Each segmented send whole, as (data, segment_bytes, address); its datagrams are in `datagrams` too.
        self.segmented: list[tuple[bytes, int, Endpoint]] = []

    def send_datagram(self, data, address: Endpoint) -> None:
        self.datagrams.append((bytes(data), address))

    def send_segments(self, data, segment_bytes: int, address: Endpoint) -> None:
        self.segmented.append((bytes(data), segment_bytes, address))
        for start in range(0, len(data), segment_bytes):
            self.send_datagram(data[start : start + segment_bytes], address)

    def write_offload_frame(self, network_id: int, vnet_frame) -> None:
        self.write_frame(network_id, bytes(vnet_frame)[10:])

    def write_frame(self, network_id: int, frame) -> None:
        self.frames.append((network_id, bytes(frame)))


class NullTransmit:
    """Sends and writes nothing, keeps nothing: for cores measured at sizes where a record would be the cost."""

    def send_datagram(self, data: object, address: object) -> None:
        pass

    def write_frame(self, network_id: int, frame: object) -> None:
        pass

    def send_segments(self, data: object, segment_bytes: int, address: object) -> None:
        pass

    def write_offload_frame(self, network_id: int, vnet_frame: object) -> None:
        pass
