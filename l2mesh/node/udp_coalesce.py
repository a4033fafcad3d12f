"""UDP segmentation offload on the TAP: consecutive datagrams of one flow joined into one super-frame, and back.

A node receiving a stream of small UDP datagrams (a game, VoIP, iperf3 -u)
used to write each to its TAP with its own system call; the kernel's TAP
write path (one skb, netif_receive_skb, ip_rcv) runs per call. With
TUN_F_USO4/6 on, one frame with a virtio_net_hdr of gso_type UDP_L4 carries
the whole run and the kernel cuts it back into datagrams
(__udp_gso_segment), as wireguard-go's TUN coalescing does.

What the kernel expects of such a frame (include/linux/virtio_net.h,
net/ipv4/udp_offload.c): csum_start at the UDP header, csum_offset 6,
NEEDS_CSUM; the IP total length (IPv6 payload length) and the UDP length
cover the whole super-frame, since ip_rcv and udp_rcv trim the skb to them
before it is segmented; the UDP checksum field holds the pseudo-header sum
over that whole length (segmentation swaps the length in it for each
segment's); the IPv4 header checksum is valid. Segments get IP ids counting
up from the first datagram's.

split_uso is the inverse, for a TAP that refuses UDP_L4 (a kernel before 6.2).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

ETH_HEADER_BYTES = 14
IPV4_HEADER_BYTES = 20  # options are not coalesced
IPV6_HEADER_BYTES = 40  # nor extension headers
UDP_HEADER_BYTES = 8
UDP_CHECKSUM_OFFSET = 6
IPPROTO_UDP = 17
# include/uapi/linux/virtio_net.h
VNET_HEADER_BYTES = 10
VNET_F_NEEDS_CSUM = 1
VNET_F_DATA_VALID = 2
VNET_GSO_NONE = 0
VNET_GSO_UDP_L4 = 5
# Older kernels segment at most 64 datagrams of one UDP GSO skb (UDP_MAX_SEGMENTS; 128 since 6.x).
MAX_SEGMENTS = 64
# The IP total length and the UDP length are 16 bits: a run stays below both.
MAX_UDP_LENGTH = 65000
# What split_uso cuts at most (the kernel's own limit): a peer's 1-byte gso_size must not cost 65,000 writes.
MAX_SPLIT_SEGMENTS = 128

_IPV4 = 0
_IPV6 = 1
# Where the fields sit in an untagged Ethernet frame.
_V4_TOTAL_LENGTH_AT = 16
_V4_CHECKSUM_AT = 24
_V4_ADDRESSES = slice(26, 34)
_V4_UDP_AT = ETH_HEADER_BYTES + IPV4_HEADER_BYTES  # 34
_V6_PAYLOAD_LENGTH_AT = 18
_V6_ADDRESSES = slice(22, 54)
_V6_UDP_AT = ETH_HEADER_BYTES + IPV6_HEADER_BYTES  # 54
_V4_HEADERS = _V4_UDP_AT + UDP_HEADER_BYTES  # 42
_V6_HEADERS = _V6_UDP_AT + UDP_HEADER_BYTES  # 62


# What must match for two datagrams to be one flow: the virtio header the frame came behind (none, or
# VNET_HEADER_BYTES compared whole: a run's first frame passed the checks, so its equals pass too), every
# byte up to the ports but the lengths, the IPv4 id and header checksum; unpacked in one call with the
# lengths, which must describe the frame exactly. By the virtio header's length (0 or VNET_HEADER_BYTES):
# IPv4: (virtio header, Ethernet header + version/IHL + TOS, total length, flags/fragment + TTL + protocol,
# addresses + ports, UDP length)
_V4_FIELDS = {size: struct.Struct(f"!{size}s16sH2x4s2x12sH").unpack_from for size in (0, VNET_HEADER_BYTES)}
# IPv6: (virtio header, Ethernet header + version/class/flow label, payload length, next header + hop limit
# + addresses + ports, UDP length)
_V6_FIELDS = {size: struct.Struct(f"!{size}s18sH38sH").unpack_from for size in (0, VNET_HEADER_BYTES)}
# A checksum request a coalesced frame can replace with its own: at the UDP header, field at offset 6.
_V4_CSUM_REQUEST = _V4_UDP_AT | UDP_CHECKSUM_OFFSET << 16
_V6_CSUM_REQUEST = _V6_UDP_AT | UDP_CHECKSUM_OFFSET << 16


def ones_complement_sum(value: int) -> int:
    """The 16-bit ones' complement sum of a big-endian byte string read as value (2**16 is 1 mod 0xffff).

    A sum of words that are not all zero is 0xffff, never 0, in ones' complement.
    """
    folded = value % 0xFFFF
    return folded if folded or not value else 0xFFFF


def ipv4_header_checksum(header: bytes | bytearray | memoryview) -> int:
    """The checksum field for a 20-byte IPv4 header (its own checksum field read as zero)."""
    value = int.from_bytes(header[:10], "big") << 64 | int.from_bytes(header[12:20], "big")
    return 0xFFFF - ones_complement_sum(value)


def udp_pseudo_sum(addresses: bytes | bytearray | memoryview, udp_length: int) -> int:
    """What a partial UDP checksum field holds: the pseudo-header's sum (addresses, protocol, length)."""
    return ones_complement_sum(int.from_bytes(addresses, "big") + IPPROTO_UDP + udp_length)


def uso_vnet_header(udp_at: int, segment_bytes: int) -> bytes:
    """virtio_net_hdr for a UDP_L4 super-frame whose UDP header starts at udp_at."""
    return bytes((VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4)) + b"".join(
        value.to_bytes(2, "little") for value in (udp_at + UDP_HEADER_BYTES, segment_bytes, udp_at, UDP_CHECKSUM_OFFSET)
    )


def csum_vnet_header(udp_at: int) -> bytes:
    """virtio_net_hdr asking the kernel to complete the UDP checksum of one datagram."""
    return bytes((VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, 0, 0)) + udp_at.to_bytes(2, "little") + UDP_CHECKSUM_OFFSET.to_bytes(2, "little")


def set_lengths(frame: bytearray, family: int, udp_length: int) -> None:
    """Make a frame's IP and UDP lengths say udp_length bytes of UDP, and its checksums fit them.

    The UDP checksum field gets the pseudo-header sum: the frame goes out with NEEDS_CSUM.
    """
    if family == _IPV4:
        frame[_V4_TOTAL_LENGTH_AT : _V4_TOTAL_LENGTH_AT + 2] = (IPV4_HEADER_BYTES + udp_length).to_bytes(2, "big")
        frame[_V4_CHECKSUM_AT : _V4_CHECKSUM_AT + 2] = ipv4_header_checksum(frame[ETH_HEADER_BYTES:_V4_UDP_AT]).to_bytes(2, "big")
        udp_at, addresses = _V4_UDP_AT, frame[_V4_ADDRESSES]
    else:
        frame[_V6_PAYLOAD_LENGTH_AT : _V6_PAYLOAD_LENGTH_AT + 2] = udp_length.to_bytes(2, "big")
        udp_at, addresses = _V6_UDP_AT, frame[_V6_ADDRESSES]
    frame[udp_at + 4 : udp_at + 6] = udp_length.to_bytes(2, "big")
    frame[udp_at + 6 : udp_at + 8] = udp_pseudo_sum(addresses, udp_length).to_bytes(2, "big")


def _udp_family(frame: bytes | bytearray | memoryview) -> int | None:
    """_IPV4 or _IPV6 for an untagged unicast Ethernet frame holding one whole UDP datagram with no IP
    options, extension headers or fragmentation, whose lengths agree with the frame's; else None."""
    size = len(frame)
    if size <= _V4_HEADERS or frame[0] & 1:  # too short to carry a payload, or multicast/broadcast
        return None
    if frame[12] == 0x08 and frame[13] == 0x00:
        if (
            frame[14] != 0x45
            or frame[23] != IPPROTO_UDP
            or frame[20] & 0x3F  # more fragments, or an offset
            or frame[21]
            or frame[16] << 8 | frame[17] != size - ETH_HEADER_BYTES
            or frame[38] << 8 | frame[39] != size - _V4_UDP_AT
        ):
            return None
        return _IPV4
    if frame[12] == 0x86 and frame[13] == 0xDD:
        if (
            size <= _V6_HEADERS
            or frame[14] >> 4 != 6
            or frame[20] != IPPROTO_UDP
            or frame[18] << 8 | frame[19] != size - _V6_UDP_AT
            or frame[58] << 8 | frame[59] != size - _V6_UDP_AT
        ):
            return None
        return _IPV6
    return None


Emit = Callable[[int, bytes | memoryview, bytes | bytearray | memoryview], None]


class UdpCoalescer:
    """Joins consecutive datagrams of one UDP flow to one TAP; emit(network_id, vnet_header, frame) writes.

    add() takes a frame into the pending run (True) or, when it cannot join
    one, emits the pending run first and returns False: the caller writes the
    frame itself, so frames leave in the order they came. flush() emits the
    pending run; call it at the end of every receive batch, so nothing waits.
    A run of one frame is emitted exactly as it came.
    """

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.counts: Counter[str] = Counter()  # uso_writes, uso_datagrams: coalesced frames written and what they held
        self._run = bytearray()
        self._count = 0
        self._network_id = 0
        self._vnet = b""  # the run's first frame's virtio header, VNET_HEADER_BYTES or none
        self._vnet_bytes = 0
        self._family = _IPV4
        self._ip_over_udp_length = 0  # what the IP length field counts beyond the UDP datagram: 20 (IPv4) or 0
        self._key: tuple[bytes, ...] = ()
        self._segment_bytes = 0
        self._headers_bytes = 0
        self._udp_length = 0
        self._closed = False  # a shorter datagram ended the run: only the last may be short

    def add(self, network_id: int, buffer: bytes | memoryview, vnet_bytes: int = 0) -> bool:
        """buffer: a whole Ethernet frame behind the virtio header it came with, vnet_bytes long (0: none,
        or VNET_HEADER_BYTES); read only for this call."""
        if (
            self._count
            and network_id == self._network_id
            and vnet_bytes == self._vnet_bytes
            and not self._closed
            and self._joins(buffer, vnet_bytes)
        ):
            return True
        self.flush()
        return self._start(network_id, buffer, vnet_bytes)

    def _start(self, network_id: int, buffer: bytes | memoryview, vnet_bytes: int) -> bool:
        """A new pending run of this one frame, if it can start one."""
        frame = buffer[vnet_bytes:] if vnet_bytes else buffer
        vnet = buffer[:vnet_bytes] if vnet_bytes else None
        if vnet is not None and (
            vnet[1] != VNET_GSO_NONE or (vnet[0] and vnet[0] != VNET_F_DATA_VALID and vnet[0] != VNET_F_NEEDS_CSUM)
        ):
            return False
        family = _udp_family(frame)
        if family is None or (vnet is not None and vnet[0] == VNET_F_NEEDS_CSUM and not self._csum_request_fits(family, vnet)):
            return False
        if family == _IPV4:
            headers, self._ip_over_udp_length = _V4_HEADERS, IPV4_HEADER_BYTES
            vnet_blob, head, _, middle, flow, _ = _V4_FIELDS[vnet_bytes](buffer)
            self._key = (vnet_blob, head, middle, flow)
        else:
            headers, self._ip_over_udp_length = _V6_HEADERS, 0
            vnet_blob, head, _, flow, _ = _V6_FIELDS[vnet_bytes](buffer)
            self._key = (vnet_blob, head, flow)
        self._run[:] = frame
        self._count = 1
        self._network_id = network_id
        self._vnet = vnet_blob
        self._vnet_bytes = vnet_bytes
        self._family = family
        self._headers_bytes = headers
        self._segment_bytes = len(frame) - headers
        self._udp_length = len(frame) - headers + UDP_HEADER_BYTES
        self._closed = False
        return True

    @staticmethod
    def _csum_request_fits(family: int, vnet: bytes | memoryview) -> bool:
        wanted = _V4_CSUM_REQUEST if family == _IPV4 else _V6_CSUM_REQUEST
        return int.from_bytes(vnet[6:10], "little") == wanted

    def _joins(self, buffer: bytes | memoryview, vnet_bytes: int) -> bool:
        """Whether the frame in buffer continues the pending run (same flow and virtio header, same size or a
        shorter last); if so, it is added. One unpack per frame: this runs for every datagram of a flood."""
        headers = vnet_bytes + self._headers_bytes
        payload_bytes = len(buffer) - headers
        if not 0 < payload_bytes <= self._segment_bytes or self._count >= MAX_SEGMENTS or self._udp_length + payload_bytes > MAX_UDP_LENGTH:
            return False
        udp_length = payload_bytes + UDP_HEADER_BYTES
        if self._family == _IPV4:
            vnet, head, ip_length, middle, flow, frame_udp_length = _V4_FIELDS[vnet_bytes](buffer)
            key: tuple[bytes, ...] = (vnet, head, middle, flow)
        else:
            vnet, head, ip_length, flow, frame_udp_length = _V6_FIELDS[vnet_bytes](buffer)
            key = (vnet, head, flow)
        # The lengths must describe this frame exactly (no Ethernet padding to carry along).
        if key != self._key or frame_udp_length != udp_length or ip_length != udp_length + self._ip_over_udp_length:
            return False
        self._run += buffer[headers:]
        self._count += 1
        self._udp_length += payload_bytes
        if payload_bytes < self._segment_bytes:
            self._closed = True
        return True

    def flush(self) -> None:
        count = self._count
        if not count:
            return
        self._count = 0
        run = self._run
        if count == 1:
            self.emit(self._network_id, self._vnet or bytes(VNET_HEADER_BYTES), run)
            return
        set_lengths(run, self._family, self._udp_length)
        udp_at = self._headers_bytes - UDP_HEADER_BYTES
        self.counts["uso_writes"] += 1
        self.counts["uso_datagrams"] += count
        self.emit(self._network_id, uso_vnet_header(udp_at, self._segment_bytes), run)


def split_uso(vnet: bytes | memoryview, frame: bytes | bytearray | memoryview) -> list[tuple[bytes, bytearray]] | None:
    """A UDP_L4 super-frame cut into its datagrams, each (virtio header asking for its checksum, frame);
    None when it is not one this module understands (IP options, extension headers, VLAN tags)."""
    if len(vnet) < VNET_HEADER_BYTES or vnet[1] != VNET_GSO_UDP_L4:
        return None
    segment_bytes = int.from_bytes(vnet[4:6], "little")
    family = None
    if len(frame) > _V4_HEADERS and frame[12:14] == b"\x08\x00" and frame[14] == 0x45 and frame[23] == IPPROTO_UDP:
        family, headers = _IPV4, _V4_HEADERS
    elif len(frame) > _V6_HEADERS and frame[12:14] == b"\x86\xdd" and frame[20] == IPPROTO_UDP:
        family, headers = _IPV6, _V6_HEADERS
    if family is None or segment_bytes == 0 or len(frame) - headers > segment_bytes * MAX_SPLIT_SEGMENTS:
        return None
    template = bytearray(frame[:headers])
    first_id = template[18] << 8 | template[19]
    segments = []
    for index, start in enumerate(range(headers, len(frame), segment_bytes)):
        payload = frame[start : start + segment_bytes]
        datagram = bytearray(template)
        if family == _IPV4:
            datagram[18:20] = ((first_id + index) & 0xFFFF).to_bytes(2, "big")
        datagram += payload
        set_lengths(datagram, family, len(payload) + UDP_HEADER_BYTES)
        segments.append((csum_vnet_header(headers - UDP_HEADER_BYTES), datagram))
    return segments
