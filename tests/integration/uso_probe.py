"""Run inside a fresh namespace (test_uso.py): what the kernel makes of UDP_L4 frames written to a TAP, and hands us.

Two TAPs: `in` with offloads and USO (as the daemon opens them), `out` with
none, so the kernel completes every checksum in software before handing a
frame to it. Datagrams coalesced by UdpCoalescer are written to `in`, for a
local socket and for a host behind `out` (forwarded); what reaches the socket
and what `out` reads must be the very datagrams, with valid checksums. Then a
local UDP_SEGMENT send out of `in` must come back to us as one UDP_L4
super-frame that split_uso cuts into those datagrams.

Prints one JSON object: the checks' outcomes and what failed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time

from l2mesh.edge.node.tap import TapDevice
from l2mesh.node.udp_coalesce import (
    VNET_GSO_UDP_L4,
    VNET_HEADER_BYTES,
    UdpCoalescer,
    split_uso,
)
from tests.checksum import internet_checksum

IN_MAC = bytes.fromhex("0200000000a1")
OUT_MAC = bytes.fromhex("0200000000a2")
PEER_MAC = bytes.fromhex("0200000000b1")  # the sender behind `in`
BEHIND_OUT_MAC = bytes.fromhex("0200000000b2")  # the host behind `out`
ADDRESSES: dict[int, dict[str, str]] = {
    4: {"in": "10.147.99.1", "peer": "10.147.99.2", "out": "10.147.97.1", "behind": "10.147.97.2", "prefix": "24"},
    6: {"in": "fd00:99::1", "peer": "fd00:99::2", "out": "fd00:97::1", "behind": "fd00:97::2", "prefix": "64"},
}
SOURCE_PORT, LOCAL_PORT, FORWARDED_PORT = 40000, 5000, 5001
PAYLOAD_SIZES = [64] * 20 + [17]  # a run and a shorter last one


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def frame(family: int, destination: str, port: int, payload: bytes, ip_id: int) -> bytes:
    """An Ethernet frame from the peer to `in`, UDP checksum complete, as a plain FRAME would bring it."""
    source = ipaddress.ip_address(ADDRESSES[family]["peer"]).packed
    target = ipaddress.ip_address(destination).packed
    udp_length = 8 + len(payload)
    udp = SOURCE_PORT.to_bytes(2, "big") + port.to_bytes(2, "big") + udp_length.to_bytes(2, "big") + b"\0\0" + payload
    checksum = full_udp_checksum(source + target, udp)
    udp = udp[:6] + checksum.to_bytes(2, "big") + udp[8:]
    if family == 4:
        header = bytearray(b"\x45\x00" + (20 + udp_length).to_bytes(2, "big") + ip_id.to_bytes(2, "big") + b"\x40\x00\x40\x11\0\0" + source + target)
        header[10:12] = ipv4_header_checksum(header).to_bytes(2, "big")
        return IN_MAC + PEER_MAC + b"\x08\x00" + bytes(header) + udp
    v6_header = b"\x60\x00\x00\x00" + udp_length.to_bytes(2, "big") + b"\x11\x40" + source + target
    return IN_MAC + PEER_MAC + b"\x86\xdd" + v6_header + udp


def full_udp_checksum(addresses: bytes, udp: bytes) -> int:
    """The UDP checksum field's final value for this datagram (its own field read as zero)."""
    pseudo = addresses + b"\0\x11" + len(udp).to_bytes(2, "big")
    return internet_checksum(pseudo + udp[:6] + b"\0\0" + udp[8:]) or 0xFFFF


def ipv4_header_checksum(header: bytes | bytearray) -> int:
    return internet_checksum(bytes(header[:10]) + b"\0\0" + bytes(header[12:20]))


def read_frames(fd: int, wait_s: float = 1.0) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            frames.append(os.read(fd, 70000))
    return frames


def check_forwarded(how: str, family: int, data: list[bytes], payloads: list[bytes], problems: list[str]) -> None:
    """Frames `out` read: the forwarded datagrams, in order, each with valid checksums."""
    got = []
    for raw in data:
        vnet, eth = raw[:VNET_HEADER_BYTES], raw[VNET_HEADER_BYTES:]
        if eth[12:14] != (b"\x08\x00" if family == 4 else b"\x86\xdd"):
            continue  # neighbour discovery, router solicitations
        udp_at, protocol = (34, eth[23]) if family == 4 else (54, eth[20])
        if protocol != 17:
            continue
        if vnet[0] or vnet[1]:
            problems.append(f"{how}: `out` got a frame with offload work left: {vnet.hex()}")
        udp = eth[udp_at:]
        if int.from_bytes(udp[2:4], "big") != FORWARDED_PORT:
            continue
        addresses = eth[26:34] if family == 4 else eth[22:54]
        if int.from_bytes(udp[4:6], "big") != len(udp):
            problems.append(f"{how}: UDP length {int.from_bytes(udp[4:6], 'big')} for {len(udp)} bytes")
        if int.from_bytes(udp[6:8], "big") != full_udp_checksum(addresses, udp):
            problems.append(f"{how}: bad UDP checksum {udp[6:8].hex()}")
        if family == 4 and ipv4_header_checksum(eth[14:34]) != int.from_bytes(eth[24:26], "big"):
            problems.append(f"{how}: bad IPv4 header checksum")
        got.append(udp[8:])
    if got != payloads:
        problems.append(f"{how}: forwarded {len(got)} datagrams {[len(g) for g in got]}, wanted {[len(p) for p in payloads]}")


def main() -> int:
    tap_in = TapDevice("l2mtusoin", IN_MAC, 1500, offload=True)
    tap_out = TapDevice("l2mtusoout", OUT_MAC, 1500, offload=False)
    subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], check=True)
    for family, a in ADDRESSES.items():
        for name, key in ((tap_in.name, "in"), (tap_out.name, "out")):
            ip("addr", "add", f"{a[key]}/{a['prefix']}", "dev", name, *(["nodad"] if family == 6 else []))
        ip("neigh", "replace", a["behind"], "lladdr", BEHIND_OUT_MAC.hex(":"), "dev", tap_out.name, "nud", "permanent")
        ip("neigh", "replace", a["peer"], "lladdr", PEER_MAC.hex(":"), "dev", tap_in.name, "nud", "permanent")
    result: dict[str, object] = {"uso": tap_in.uso}
    problems: list[str] = []
    counts: dict[str, int] = {}

    split = False  # write the coalesced frame cut up again by split_uso (the fallback for kernels before 6.2)

    def emit(network_id: int, vnet: bytes | memoryview, data: bytes | bytearray | memoryview) -> None:
        if not split:
            os.writev(tap_in.fd, (vnet, data))
            return
        pieces = split_uso(vnet, data)
        assert pieces is not None
        for piece_vnet, piece in pieces:
            os.writev(tap_in.fd, (piece_vnet, piece))

    coalescer = UdpCoalescer(emit)
    for family in (4, 6):
        a = ADDRESSES[family]
        payloads = [bytes([index]) * size for index, size in enumerate(PAYLOAD_SIZES)]
        for split in (False, True):
            local = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
            local.bind((a["in"], LOCAL_PORT))
            local.settimeout(1.0)
            read_frames(tap_out.fd, 0.2)  # what came out before: router solicitations and the like
            for destination, port in ((a["in"], LOCAL_PORT), (a["behind"], FORWARDED_PORT)):
                for index, payload in enumerate(payloads):
                    datagram = frame(family, destination, port, payload, 1000 + index)
                    if not coalescer.add(1, memoryview(datagram)):
                        problems.append(f"v{family}: datagram {index} not taken")
                coalescer.flush()
            received = []
            try:
                for _ in payloads:
                    received.append(local.recv(2048))
            except TimeoutError:
                pass
            how = f"v{family}{' split' if split else ''}"
            if received != payloads:
                problems.append(f"{how}: local socket got {len(received)} datagrams, wanted {len(payloads)} (or different bytes)")
            check_forwarded(how, family, read_frames(tap_out.fd), payloads, problems)
            local.close()

        # A local program's segmented send out of `in`: one UDP_L4 super-frame on our side of the TAP.
        sender = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
        sender.bind((a["in"], 0))
        run = b"".join(payloads)
        sender.sendmsg([run], [(socket.SOL_UDP, 103, (64).to_bytes(2, "little"))], 0, (a["peer"], 7000))
        sender.close()
        super_frames = [f for f in read_frames(tap_in.fd, 0.3) if f[1] == VNET_GSO_UDP_L4]
        counts[f"v{family}_super_frames_read"] = len(super_frames)
        if len(super_frames) != 1:
            problems.append(f"v{family}: {len(super_frames)} UDP_L4 super-frames read from `in`, wanted 1")
            continue
        pieces = split_uso(super_frames[0][:VNET_HEADER_BYTES], super_frames[0][VNET_HEADER_BYTES:])
        if pieces is None or [p[1][(42 if family == 4 else 62):] for p in pieces] != payloads:
            problems.append(f"v{family}: split_uso did not give back the datagrams sent")
            continue
    result.update(counts=counts, coalesced=dict(coalescer.counts), problems=problems)
    print(json.dumps(result))
    tap_in.close()
    tap_out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
