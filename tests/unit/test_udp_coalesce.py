"""l2mesh.node.udp_coalesce: runs of one UDP flow become UDP_L4 super-frames that give back the very datagrams,
everything else passes untouched and in order; and EdgeTransmit's use of it over a datagram socket standing in for a TAP.

The checksums are checked against RFC 1071 computed word by word here, not by the module's own arithmetic;
tests/integration/test_uso.py checks the same frames against the kernel.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.edge.node.transmit import EdgeTransmit
from l2mesh.node.udp_coalesce import (
    MAX_SEGMENTS,
    MAX_UDP_LENGTH,
    VNET_F_DATA_VALID,
    VNET_F_NEEDS_CSUM,
    VNET_GSO_UDP_L4,
    VNET_HEADER_BYTES,
    UdpCoalescer,
    ipv4_header_checksum,
    ones_complement_sum,
    split_uso,
    udp_pseudo_sum,
)
from tests.checksum import internet_checksum

TAP_MAC = bytes.fromhex("0200000000a1")
PEER_MAC = bytes.fromhex("0200000000b1")
V4 = (ipaddress.ip_address("10.147.1.2").packed, ipaddress.ip_address("10.147.1.1").packed)
V4_OTHER = (ipaddress.ip_address("10.147.1.3").packed, ipaddress.ip_address("10.147.1.1").packed)
V6 = (ipaddress.ip_address("fd00::2").packed, ipaddress.ip_address("fd00::1").packed)


def reference_pseudo_sum(addresses: bytes, udp_length: int) -> int:
    """The pseudo-header's ones' complement sum, word by word (what a partial checksum field holds)."""
    return 0xFFFF - internet_checksum(addresses + b"\0\x11" + udp_length.to_bytes(2, "big"))


def udp_frame(
    payload: bytes, addresses: tuple[bytes, bytes] = V4, ports: tuple[int, int] = (40000, 5000), ip_id: int = 7,
    destination_mac: bytes = TAP_MAC, ttl: int = 64,
) -> bytes:
    """A frame as a peer's plain FRAME brings it: UDP and IPv4 header checksums complete."""
    source, target = addresses
    udp_length = 8 + len(payload)
    udp = ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big") + udp_length.to_bytes(2, "big") + b"\0\0" + payload
    checksum = internet_checksum(source + target + b"\0\x11" + udp_length.to_bytes(2, "big") + udp) or 0xFFFF
    udp = udp[:6] + checksum.to_bytes(2, "big") + udp[8:]
    if len(source) == 4:
        header = bytearray(b"\x45\x00" + (20 + udp_length).to_bytes(2, "big") + ip_id.to_bytes(2, "big") + b"\x40\x00" + bytes([ttl]) + b"\x11\0\0" + source + target)
        header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
        return destination_mac + PEER_MAC + b"\x08\x00" + bytes(header) + udp
    v6_header = b"\x60\x00\x00\x00" + udp_length.to_bytes(2, "big") + b"\x11" + bytes([ttl]) + source + target
    return destination_mac + PEER_MAC + b"\x86\xdd" + v6_header + udp


def tcp_frame(payload: bytes) -> bytes:
    source, target = V4
    header = bytearray(b"\x45\x00" + (40 + len(payload)).to_bytes(2, "big") + b"\0\x01\x40\x00\x40\x06\0\0" + source + target)
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return TAP_MAC + PEER_MAC + b"\x08\x00" + bytes(header) + bytes(20) + payload


def needs_csum_vnet(udp_at: int) -> bytes:
    return bytes((VNET_F_NEEDS_CSUM, 0, 0, 0, 0, 0)) + udp_at.to_bytes(2, "little") + (6).to_bytes(2, "little")


class Recorder:
    """The coalescer's emit, and the caller's own writes for frames it did not take, in one ordered list."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes, bytes]] = []
        self.coalescer = UdpCoalescer(self.emit)

    def emit(self, network_id: int, vnet: bytes | memoryview, frame: bytes | bytearray | memoryview) -> None:
        self.writes.append((network_id, bytes(vnet), bytes(frame)))

    def offer(self, network_id: int, frame: bytes, vnet: bytes | None = None) -> bool:
        # The receive path hands frames (behind their virtio header, if any) in a scratch buffer that is reused.
        scratch = bytearray((vnet or b"") + frame)
        taken = self.coalescer.add(network_id, memoryview(scratch), len(vnet) if vnet is not None else 0)
        if not taken:
            self.writes.append((network_id, vnet or bytes(VNET_HEADER_BYTES), frame))
        scratch[:] = bytes(len(scratch))
        return taken

    def datagrams(self) -> list[tuple[int, bytes, bytes]]:
        """Every write cut back into what the kernel delivers: super-frames split, the rest as written."""
        out = []
        for network_id, vnet, frame in self.writes:
            pieces = split_uso(vnet, frame) if vnet[1] == VNET_GSO_UDP_L4 else None
            if pieces is None:
                out.append((network_id, vnet, frame))
            else:
                out.extend((network_id, piece_vnet, bytes(piece)) for piece_vnet, piece in pieces)
        return out


def normalized(frame: bytes) -> bytes:
    """A frame with its UDP checksum field cleared (complete in one, partial in the other) once the IPv4 header's is checked."""
    data = bytearray(frame)
    if data[12:14] == b"\x08\x00" and data[14] == 0x45 and data[23] == 17:
        assert internet_checksum(bytes(data[14:34])) == 0, "IPv4 header checksum"
        data[40:42] = b"\0\0"
    elif data[12:14] == b"\x86\xdd" and data[20] == 17:
        data[60:62] = b"\0\0"
    return bytes(data)


def test_a_run_of_one_flow_becomes_one_super_frame_the_kernel_can_segment() -> None:
    recorder = Recorder()
    payloads = [bytes([i]) * 64 for i in range(10)] + [b"last"]
    for index, payload in enumerate(payloads):
        assert recorder.offer(1, udp_frame(payload, ip_id=100 + index))
    assert recorder.writes == []  # held until the end of the batch
    recorder.coalescer.flush()
    [(network_id, vnet, frame)] = recorder.writes
    assert network_id == 1
    udp_length = 8 + sum(map(len, payloads))
    flags, gso_type = vnet[0], vnet[1]
    hdr_len, gso_size, csum_start, csum_offset = (int.from_bytes(vnet[i : i + 2], "little") for i in range(2, 10, 2))
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, 42, 64, 34, 6)
    assert int.from_bytes(frame[16:18], "big") == 20 + udp_length  # IPv4 total length: the whole super-frame
    assert internet_checksum(frame[14:34]) == 0
    assert int.from_bytes(frame[38:40], "big") == udp_length
    assert int.from_bytes(frame[40:42], "big") == reference_pseudo_sum(V4[0] + V4[1], udp_length)
    assert frame[42:] == b"".join(payloads)
    assert recorder.coalescer.counts == {"uso_writes": 1, "uso_datagrams": 11}


def test_ipv6_super_frame_carries_the_payload_length_and_pseudo_header_sum() -> None:
    recorder = Recorder()
    payloads = [b"x" * 100, b"y" * 100, b"z" * 3]
    for payload in payloads:
        assert recorder.offer(2, udp_frame(payload, V6), needs_csum_vnet(54))
    recorder.coalescer.flush()
    [(_, vnet, frame)] = recorder.writes
    assert vnet == bytes((1, 5)) + (62).to_bytes(2, "little") + (100).to_bytes(2, "little") + (54).to_bytes(2, "little") + (6).to_bytes(2, "little")
    udp_length = 8 + 203
    assert int.from_bytes(frame[18:20], "big") == udp_length
    assert int.from_bytes(frame[58:60], "big") == udp_length
    assert int.from_bytes(frame[60:62], "big") == reference_pseudo_sum(V6[0] + V6[1], udp_length)


def test_a_single_datagram_is_written_exactly_as_it_came() -> None:
    recorder = Recorder()
    frame, vnet = udp_frame(b"ping"), needs_csum_vnet(34)
    assert recorder.offer(1, frame, vnet)
    recorder.coalescer.flush()
    assert recorder.writes == [(1, vnet, frame)]
    recorder.coalescer.flush()  # nothing pending: nothing more
    assert len(recorder.writes) == 1


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(tcp_frame(b"t" * 64), id="tcp"),
        pytest.param(udp_frame(b"m" * 64, destination_mac=bytes.fromhex("01005e000001")), id="multicast"),
        pytest.param(udp_frame(b"b" * 64, destination_mac=b"\xff" * 6), id="broadcast"),
        pytest.param(udp_frame(b"p" * 10) + bytes(8), id="ethernet-padding"),
        pytest.param(udp_frame(b""), id="empty-payload"),
        pytest.param(TAP_MAC + PEER_MAC + b"\x81\x00" + bytes(60), id="vlan-tag"),
        pytest.param(TAP_MAC + PEER_MAC + b"\x08\x06" + bytes(28), id="arp"),
    ],
)
def test_frames_that_are_not_plain_unicast_udp_are_left_to_the_caller(frame: bytes) -> None:
    recorder = Recorder()
    assert not recorder.offer(1, frame)
    assert recorder.writes == [(1, bytes(10), frame)]


def test_ip_options_fragments_and_lengths_that_disagree_are_not_coalesced() -> None:
    with_options = bytearray(udp_frame(b"o" * 64))
    with_options[14] = 0x46
    fragment = bytearray(udp_frame(b"f" * 64))
    fragment[20] |= 0x20  # more fragments
    short_udp_v4 = bytearray(udp_frame(b"u" * 64))
    short_udp_v4[38:40] = (8 + 10).to_bytes(2, "big")  # the datagram ends before the IP packet does
    short_udp_v6 = bytearray(udp_frame(b"u" * 64, V6))
    short_udp_v6[58:60] = (8 + 10).to_bytes(2, "big")
    for frame in (with_options, fragment, short_udp_v4, short_udp_v6):
        assert not Recorder().offer(1, bytes(frame))
    recorder = Recorder()
    assert recorder.offer(1, udp_frame(b"u" * 64))
    assert not recorder.offer(1, bytes(short_udp_v4))  # nor joined to a run


def test_super_frames_and_odd_checksum_requests_are_not_coalesced_and_flush_what_is_pending_first() -> None:
    recorder = Recorder()
    assert recorder.offer(1, udp_frame(b"a" * 64))
    assert recorder.offer(1, udp_frame(b"b" * 64))
    tso = bytes((1, 1)) + bytes(8)
    assert not recorder.offer(1, tcp_frame(b"t" * 2000), tso)
    odd_request = bytes((1, 0, 0, 0, 0, 0)) + (30).to_bytes(2, "little") + (6).to_bytes(2, "little")
    assert not recorder.offer(1, udp_frame(b"c" * 64), odd_request)
    assert [vnet[1] for _, vnet, _ in recorder.writes] == [VNET_GSO_UDP_L4, 1, 0]


def test_runs_end_at_another_flow_another_network_a_larger_datagram_and_after_a_shorter_one() -> None:
    recorder = Recorder()
    sequence = [
        (1, udp_frame(b"a" * 64)), (1, udp_frame(b"a" * 64)),
        (1, udp_frame(b"b" * 64, V4_OTHER)),  # another source address
        (1, udp_frame(b"c" * 64, ports=(40001, 5000))),  # another port
        (2, udp_frame(b"d" * 64, ports=(40001, 5000))),  # another TAP
        (2, udp_frame(b"e" * 64, ports=(40001, 5000), ttl=3)),  # another TTL
        (2, udp_frame(b"f" * 65, ports=(40001, 5000), ttl=3)),  # larger than the run's segment
        (2, udp_frame(b"g" * 30, ports=(40001, 5000), ttl=3)),  # shorter: ends the run, which it joins
        (2, udp_frame(b"h" * 30, ports=(40001, 5000), ttl=3)),  # so the next one starts a new run
    ]
    for network_id, frame in sequence:
        assert recorder.offer(network_id, frame)
    recorder.coalescer.flush()
    assert [(n, vnet[1], (len(f) - 42) if vnet[1] == 0 else int.from_bytes(f[38:40], "big") - 8) for n, vnet, f in recorder.writes] == [
        (1, VNET_GSO_UDP_L4, 128), (1, 0, 64), (1, 0, 64), (2, 0, 64), (2, 0, 64), (2, VNET_GSO_UDP_L4, 95), (2, 0, 30),
    ]


def with_bytes(frame: bytes, at: int, value: bytes) -> bytes:
    return frame[:at] + value + frame[at + len(value) :]


@pytest.mark.parametrize("addresses", [V4, V6], ids=["v4", "v6"])
def test_a_datagram_joins_no_run_of_another_flow_or_with_lengths_that_disagree(addresses: tuple[bytes, bytes]) -> None:
    udp_at, ip_length_at = (34, 16) if len(addresses[0]) == 4 else (54, 18)
    base = udp_frame(b"r" * 64, addresses)
    ip_length = base[ip_length_at : ip_length_at + 2]
    strangers = {
        "source port": with_bytes(base, udp_at, (40001).to_bytes(2, "big")),
        "destination port": with_bytes(base, udp_at + 2, (5001).to_bytes(2, "big")),
        "source MAC": with_bytes(base, 6, bytes.fromhex("0200000000c1")),
        "last address byte": with_bytes(base, udp_at - 1, b"\x09"),
        "IP length": with_bytes(base, ip_length_at, (int.from_bytes(ip_length, "big") - 1).to_bytes(2, "big")),
    }
    for what, stranger in strangers.items():
        recorder = Recorder()
        assert recorder.offer(1, base)
        recorder.offer(1, stranger)
        recorder.coalescer.flush()
        assert len(recorder.writes) == 2, what


def test_runs_stop_at_the_segment_limit_and_below_the_length_limit() -> None:
    recorder = Recorder()
    for _ in range(MAX_SEGMENTS + 1):
        recorder.offer(1, udp_frame(b"s" * 16))
    recorder.coalescer.flush()
    assert [len(split_uso(v, f) or [f]) for _, v, f in recorder.writes] == [MAX_SEGMENTS, 1]
    recorder = Recorder()
    size = 1400
    for _ in range(60):
        recorder.offer(1, udp_frame(b"L" * size))
    recorder.coalescer.flush()
    for _, vnet, frame in recorder.writes:
        assert len(frame) - 34 <= MAX_UDP_LENGTH
    assert sum(len(split_uso(v, f) or [f]) for _, v, f in recorder.writes) == 60


FLOWS = [V4, V4_OTHER, V6]


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, bytes, bytes | None]:
    network_id = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["udp", "udp", "udp", "tcp", "multicast"]))
    size = draw(st.sampled_from([1, 17, 64, 64, 64, 200, 1400]))
    payload = draw(st.binary(min_size=size, max_size=size))
    if kind == "tcp":
        return network_id, tcp_frame(payload), None
    if kind == "multicast":
        return network_id, udp_frame(payload, destination_mac=bytes.fromhex("333300000001")), None
    addresses = draw(st.sampled_from(FLOWS))
    frame = udp_frame(payload, addresses, ip_id=draw(st.integers(0, 0xFFFF)))
    vnet = draw(st.sampled_from([None, needs_csum_vnet(34 if len(addresses[0]) == 4 else 54), bytes((2,)) + bytes(9)]))
    if vnet is not None and vnet[0] == VNET_F_NEEDS_CSUM:
        # As a peer's kernel hands it over: the UDP checksum field holds only the pseudo-header's sum.
        udp_at = 34 if len(addresses[0]) == 4 else 54
        partial = reference_pseudo_sum(addresses[0] + addresses[1], len(frame) - udp_at).to_bytes(2, "big")
        frame = frame[: udp_at + 6] + partial + frame[udp_at + 8 :]
    return network_id, frame, vnet


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), max_size=120), st.lists(st.integers(0, 120), max_size=4))
def test_any_sequence_arrives_as_the_same_datagrams_in_the_same_order(
    sequence: list[tuple[int, bytes, bytes | None]], flush_points: list[int]
) -> None:
    recorder = Recorder()
    for index, (network_id, frame, vnet) in enumerate(sequence):
        if index in flush_points:
            recorder.coalescer.flush()  # batch boundaries anywhere
        recorder.offer(network_id, frame, vnet)
    recorder.coalescer.flush()
    delivered = recorder.datagrams()
    assert len(delivered) == len(sequence)
    for (network_id, frame, _), (got_network, got_vnet, got_frame) in zip(sequence, delivered):
        assert got_network == network_id
        if got_frame == frame:
            continue
        # Coalesced and cut again: same bytes but for the IPv4 id, set by position, and the checksum fields.
        assert got_vnet[0] == VNET_F_NEEDS_CSUM
        expected, got = bytearray(normalized(frame)), bytearray(normalized(got_frame))
        if expected[12:14] == b"\x08\x00":
            expected[18:20] = got[18:20] = b"\0\0"
            expected[24:26] = got[24:26] = b"\0\0"
        assert got == expected


def test_checksum_helpers_agree_with_rfc_1071() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert ipv4_header_checksum(header) == internet_checksum(header) == 0xB861
    assert udp_pseudo_sum(V6[0] + V6[1], 99) == reference_pseudo_sum(V6[0] + V6[1], 99)
    assert ones_complement_sum(0) == 0
    assert ones_complement_sum(0xFFFF) == 0xFFFF  # never 0 for words that are not all zero
    assert ones_complement_sum(0x1_0001) == 2


def test_split_uso_refuses_what_is_not_a_udp_super_frame() -> None:
    assert split_uso(bytes(10), udp_frame(b"x" * 10)) is None
    assert split_uso(bytes((1, 5)) + bytes(8), udp_frame(b"x" * 10)) is None  # gso_size 0
    assert split_uso(bytes((1, 5, 0, 0, 64, 0, 0, 0, 0, 0)), tcp_frame(b"t" * 200)) is None
    one_byte_segments = bytes((1, 5, 0, 0, 1, 0, 0, 0, 0, 0))
    assert split_uso(one_byte_segments, udp_frame(b"x" * 128)) is not None
    assert split_uso(one_byte_segments, udp_frame(b"x" * 129)) is None  # more datagrams than the kernel would cut


# -- EdgeTransmit: a datagram socket pair stands in for the TAP (one write, one message) -----------------------
@pytest.fixture
def tap() -> Iterator[tuple[EdgeTransmit, socket.socket]]:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    kernel.setblocking(False)
    transmit = EdgeTransmit(udp)
    transmit.coalescing = True
    transmit.tap_fds[1] = ours.fileno()
    try:
        yield transmit, kernel
    finally:
        for sock in (ours, kernel, udp):
            sock.close()


def written(kernel: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(kernel.recv(70000))
        except BlockingIOError:
            return out


def batched_after_a_busy_drain(transmit: EdgeTransmit, kernel: socket.socket, drain: Callable[[], None]) -> Callable[[], None]:
    """frames_batched(drain), primed by a drain of two frames so its next drain batches (the first does not)."""
    priming = [True]

    def drain_or_prime() -> None:
        if priming:
            priming.clear()
            transmit.write_frame(1, memoryview(udp_frame(b"x" * 8)))
            transmit.write_frame(1, memoryview(udp_frame(b"y" * 8)))
            return
        drain()

    batched = transmit.frames_batched(drain_or_prime)
    batched()
    written(kernel)
    transmit.coalescer.counts.clear()
    return batched


def test_a_lone_datagram_is_written_at_once_and_a_drain_after_a_busy_one_batches(tap: tuple[EdgeTransmit, socket.socket]) -> None:
    transmit, kernel = tap
    frames = [udp_frame(bytes([n]) * 64) for n in range(3)]
    plan = [frames[:1], frames, frames]

    def drain() -> None:
        for frame in plan.pop(0):
            transmit.write_frame(1, memoryview(frame))
            if len(plan) == 2:
                assert written(kernel) == [bytes(10) + frame]  # the first drain: not held

    batched = transmit.frames_batched(drain)
    batched()  # one frame, at once
    batched()  # after a one-frame drain: still frame by frame
    assert transmit.coalescer.counts["uso_writes"] == 0
    assert len(written(kernel)) == 3
    batched()  # after a three-frame drain: one super-frame
    [message] = written(kernel)
    assert message[1] == VNET_GSO_UDP_L4 and transmit.coalescer.counts["uso_datagrams"] == 3


def test_frames_written_outside_a_drain_leave_at_once(tap: tuple[EdgeTransmit, socket.socket]) -> None:
    transmit, kernel = tap
    frame = udp_frame(b"p" * 64)
    transmit.write_frame(1, memoryview(frame))
    transmit.write_frame(1, memoryview(frame))
    assert written(kernel) == [bytes(10) + frame] * 2


def test_a_drain_writes_one_super_frame_before_it_returns(tap: tuple[EdgeTransmit, socket.socket]) -> None:
    transmit, kernel = tap
    vnet = needs_csum_vnet(34)

    def drain() -> None:
        for index in range(5):
            transmit.write_offload_frame(1, memoryview(vnet + udp_frame(bytes([index]) * 64)))
        assert written(kernel) == []

    batched_after_a_busy_drain(transmit, kernel, drain)()
    [message] = written(kernel)
    assert message[1] == VNET_GSO_UDP_L4 and message[VNET_HEADER_BYTES + 42 :] == b"".join(bytes([i]) * 64 for i in range(5))
    assert transmit.coalescer.counts == {"uso_writes": 1, "uso_datagrams": 5}


def test_a_kernel_refusing_udp_l4_gets_the_datagrams_one_by_one_from_then_on(tap: tuple[EdgeTransmit, socket.socket]) -> None:
    transmit, kernel = tap
    real_writev = transmit._writev

    def writev_before_6_2(fd: int, buffers: list[bytes]) -> int:
        if bytes(buffers[0])[1] == VNET_GSO_UDP_L4:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_writev(fd, buffers)

    transmit._writev = writev_before_6_2  # type: ignore[assignment]
    payloads = [b"a" * 64, b"b" * 64, b"c" * 5]

    def drain() -> None:
        for payload in payloads:
            transmit.write_frame(1, memoryview(udp_frame(payload)))

    batched = batched_after_a_busy_drain(transmit, kernel, drain)
    batched()
    first = written(kernel)
    assert [m[VNET_HEADER_BYTES + 42 :] for m in first] == payloads
    assert all(m[0] == VNET_F_NEEDS_CSUM and m[1] == 0 for m in first)
    assert transmit.drops["tap_refused_uso"] == 1 and not transmit.coalescing
    batched()
    assert [m[VNET_HEADER_BYTES:] for m in written(kernel)] == [udp_frame(p) for p in payloads]  # as they came


def test_a_peer_super_frame_the_kernel_refuses_is_written_as_its_datagrams_and_teaches_nothing(tap: tuple[EdgeTransmit, socket.socket]) -> None:
    transmit, kernel = tap
    real_write = transmit._write

    def write_before_6_2(fd: int, data: bytes) -> int:
        if bytes(data[:2])[1] == VNET_GSO_UDP_L4:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    transmit._write = write_before_6_2  # type: ignore[assignment]
    payloads = [b"a" * 64, b"b" * 64, b"c" * 5]
    recorder = Recorder()
    for payload in payloads:
        recorder.offer(1, udp_frame(payload))
    recorder.coalescer.flush()
    [(_, vnet, super_frame)] = recorder.writes
    transmit.write_offload_frame(1, memoryview(vnet + super_frame))
    assert [m[VNET_HEADER_BYTES + 42 :] for m in written(kernel)] == payloads
    assert transmit.coalescing and "tap_refused_uso" not in transmit.drops  # a peer's frame may be malformed on purpose


def test_a_run_holds_frames_behind_one_virtio_header_only() -> None:
    """Joining compares the virtio header whole with the run's first: a frame of the same flow behind another
    (valid) header starts a run of its own, and nothing is lost or reordered."""
    recorder = Recorder()
    data_valid = bytes((VNET_F_DATA_VALID,)) + bytes(VNET_HEADER_BYTES - 1)
    offers = [(b"a" * 64, needs_csum_vnet(34)), (b"b" * 64, needs_csum_vnet(34)), (b"c" * 64, data_valid),
              (b"d" * 64, data_valid), (b"e" * 64, None)]
    for index, (payload, vnet) in enumerate(offers):
        assert recorder.offer(1, udp_frame(payload, ip_id=index), vnet)
    recorder.coalescer.flush()
    assert [len(frame) for _, _, frame in recorder.writes] == [42 + 128, 42 + 128, 42 + 64]
    assert recorder.coalescer.counts == {"uso_writes": 2, "uso_datagrams": 4}
    assert [bytes(frame[42:]) for _, _, frame in recorder.datagrams()] == [payload for payload, _ in offers]
