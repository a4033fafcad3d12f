"""Floods one l2mesh node with handshake initiations, for tests/integration/test_handshake_flood.py and benchmarks/flood.py.

Runs inside a lab namespace. Each source address given gets its own socket;
packets go round-robin across them at a steady rate, for a bounded time
and count, only to 198.18.0.0/15. Two kinds:

  garbage  random bytes after the HANDSHAKE_INIT type byte (fails mac1)
  mac1     random Noise content with a correct mac1 (whoever knows the
           target's public key can send these; each costs the target a DH
           unless it is under load and wants cookies)

Prints one JSON line at the end (also when stopped by SIGTERM):
{"sent", "seconds", "send_errors"}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import time

from l2mesh.crypto.cookie import CookieGenerator
from l2mesh.wire.packets import HANDSHAKE_INIT_BYTES, MAC_BYTES, PacketType

ALLOWED_TARGETS = ipaddress.ip_network("198.18.0.0/15")
MAX_SECONDS = 300.0
MAX_RATE_PER_S = 50_000
POOL = 4096  # distinct packets, cycled
TICK_S = 0.005


def packets(kind: str, target_static: bytes) -> list[bytes]:
    if kind == "garbage":
        return [bytes([PacketType.HANDSHAKE_INIT]) + os.urandom(HANDSHAKE_INIT_BYTES - 1) for _ in range(POOL)]
    macs = CookieGenerator(target_static)
    body_bytes = HANDSHAKE_INIT_BYTES - 2 * MAC_BYTES
    return [macs.add_macs(bytes([PacketType.HANDSHAKE_INIT, 0, 0, 0]) + os.urandom(body_bytes - 4), 0.0) for _ in range(POOL)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of the node (in 198.18.0.0/15)")
    parser.add_argument("--kind", choices=("garbage", "mac1"), required=True)
    parser.add_argument("--key", default="", help="the target's x25519 public key, hex (kind mac1)")
    parser.add_argument("--rate", type=float, required=True, help="initiations per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--sources", required=True, help="comma-separated local addresses to send from")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    try:
        args.address = (str(ipaddress.ip_address(host)), int(port))
        args.static = bytes.fromhex(args.key)
    except ValueError as exc:
        parser.error(f"bad target or key: {exc}")
    if ipaddress.ip_address(host) not in ALLOWED_TARGETS:
        parser.error(f"target {host} is outside {ALLOWED_TARGETS}")
    if not 0 < args.rate <= MAX_RATE_PER_S or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"rate must be in (0, {MAX_RATE_PER_S}], seconds in (0, {MAX_SECONDS}]")
    if args.kind == "mac1" and len(args.static) != 32:
        parser.error("kind mac1 needs --key, the target's 32-byte x25519 public key in hex")
    args.source_list = [s for s in args.sources.split(",") if s]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sockets = []
    for source in args.source_list:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((source, 0))
        except OSError as exc:
            print(f"handshake_flooder: cannot send from {source}: {exc.strerror}", file=sys.stderr)
            return 1
        sock.setblocking(False)
        sockets.append(sock)
    pool = packets(args.kind, args.static)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    sent = errors = 0
    limit = int(args.rate * args.seconds)
    start = time.monotonic()
    while sent < limit and not stopping:
        elapsed = time.monotonic() - start
        if elapsed >= args.seconds:
            break
        due = min(limit, int(elapsed * args.rate) + 1)
        while sent < due:
            try:
                sockets[sent % len(sockets)].sendto(pool[sent % POOL], args.address)
            except OSError:  # a full buffer, an ICMP error from earlier: count it, keep the pace
                errors += 1
            sent += 1
        time.sleep(TICK_S)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3), "send_errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
