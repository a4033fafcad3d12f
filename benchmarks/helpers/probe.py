"""control.py's data-plane probe, run inside a namespace with the benchmark's interpreter.

    probe.py send DST PORT INTERVAL   a UDP stream of (magic, seq, monotonic send time)
    probe.py sniff IFACE PORT         print "seq sent received" for every such frame arriving on IFACE

Network namespaces do not virtualize clocks: the times it prints compare
directly with the benchmark's own CLOCK_MONOTONIC readings.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

MAGIC = b"l2mbctl1"
FMT = "!8sQd"
SIZE = struct.calcsize(FMT)
ETH_HEADER_BYTES = 14
UDP_HEADER_BYTES = 8
IPPROTO_UDP = 17


def send(dst: str, port: int, interval_s: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seq, due = 0, time.monotonic()
    while True:
        now = time.monotonic()
        try:
            sock.sendto(struct.pack(FMT, MAGIC, seq, now), (dst, port))
        except OSError as exc:
            print(f"error {seq} {now:.6f} {exc.errno}", flush=True)
        seq += 1
        due += interval_s
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            due = time.monotonic()


def sniff(iface: str, port: int) -> None:
    # At layer 2, on the TAP: what the overlay delivers, whatever the kernel
    # above it then does (b loses its IP when it is deauthorized).
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    raw.bind((iface, 0))
    # A UDP socket on the port, so b's kernel does not answer port-unreachable.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([raw, sink], [], [])
        if sink in readable:
            sink.recv(65535)
        if raw not in readable:
            continue
        data, address = raw.recvfrom(65535)
        received = time.monotonic()
        if address[2] == socket.PACKET_OUTGOING or len(data) < ETH_HEADER_BYTES + 20 or data[23] != IPPROTO_UDP:
            continue
        ihl_bytes = (data[ETH_HEADER_BYTES] & 15) * 4
        udp = data[ETH_HEADER_BYTES + ihl_bytes:]
        if len(udp) < UDP_HEADER_BYTES + SIZE or int.from_bytes(udp[2:4], "big") != port:
            continue
        magic, seq, sent = struct.unpack(FMT, udp[UDP_HEADER_BYTES:UDP_HEADER_BYTES + SIZE])
        if magic == MAGIC:
            print(f"{seq} {sent:.6f} {received:.6f}", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "send":
        send(argv[1], int(argv[2]), float(argv[3]))
    elif len(argv) == 3 and argv[0] == "sniff":
        sniff(argv[1], int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
