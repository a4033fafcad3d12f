"""Sends mutated valid l2mesh packets to a running member or controller: tests/integration/test_live_fuzz.py.

Runs inside a lab namespace. Against a member (--mode member) it has the
identity of a member listed in the target's network config; against a
controller (--mode controller) any identity will do, as a controller takes
sessions from anyone and asks for proof in the messages. Either way it opens
a real session with the target first (a Noise handshake the daemon
accepts). Then, paced and bounded in count and time, only to
198.18.0.0/15, it sends a mix:

  sealed      mutated inner messages sealed with the live session: to a member,
              Ethernet frames of every kind and control messages (they reach
              its message parsing, its switch and its TAP); to a controller,
              netconf requests with a real proof, multicast likes and gathers,
              endpoint hints, probes
  fragmented  the same, cut into fragments (some with mutated headers)
  tampered    valid sealed packets with bytes changed after sealing, or replayed
  handshake   mutated initiations from a key the network does not list,
              half with a correct mac1 (past the screen, into the DH)
  outer       other outer packets mutated: relay envelopes, identity
              requests, cookie replies, transport headers

Prints one JSON line: {"sent", "seconds", "by_kind", "session"}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a file in a namespace: the repository root holds `tests`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from l2mesh.edge.identity_file import load_identity  # noqa: E402
from l2mesh.fragments import fragment  # noqa: E402
from l2mesh.identity import Identity  # noqa: E402
from l2mesh.session import SessionTable  # noqa: E402
from l2mesh.wire.packets import PacketType  # noqa: E402
from tests.fuzz import corpus  # noqa: E402
from tests.fuzz.mutate import Mutator  # noqa: E402

ALLOWED_TARGETS = ipaddress.ip_network("198.18.0.0/15")
MAX_PACKETS = 100_000
MAX_SECONDS = 120.0
HANDSHAKE_TRIES = 10
TICK_S = 0.005
KINDS = (("sealed", 55), ("fragmented", 10), ("tampered", 10), ("handshake", 15), ("outer", 10))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of the member or controller (in 198.18.0.0/15)")
    parser.add_argument("--mode", choices=("member", "controller"), default="member")
    parser.add_argument("--target-key", required=True, help="its x25519 public key, hex")
    parser.add_argument("--target-id", required=True, help="its node id, hex (mode controller: another member's)")
    parser.add_argument("--target-ip", required=True, help="its overlay address (mode controller: another member's)")
    parser.add_argument("--state-dir", type=Path, required=True, help="our identity (a member of the network)")
    parser.add_argument("--listen", required=True, help="our underlay HOST:PORT, as the network config lists it")
    parser.add_argument("--network-id", required=True, help="hex")
    parser.add_argument("--own-ip", required=True, help="our overlay address")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="packets per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    args.address = (host, int(port))
    listen_host, _, listen_port = args.listen.rpartition(":")
    args.listen_address = (listen_host, int(listen_port))
    if ipaddress.ip_address(host) not in ALLOWED_TARGETS:
        parser.error(f"target {host} is outside {ALLOWED_TARGETS}")
    if not 0 < args.count <= MAX_PACKETS or not 0 < args.rate or args.count / args.rate > MAX_SECONDS:
        parser.error(f"count must be in 1..{MAX_PACKETS} and take at most {MAX_SECONDS} s at the rate given")
    return args


def open_session(sock: socket.socket, table: SessionTable, peer_static: bytes, address: tuple[str, int]) -> object:
    """A live session with the target: our initiation, its response (retried, as a daemon retries)."""
    session = table.session_for(peer_static)
    for _ in range(HANDSHAKE_TRIES):
        sock.sendto(session.create_initiation(time.monotonic()), address)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                break
            if data[:1] == bytes([PacketType.HANDSHAKE_RESPONSE]):
                try:
                    table.handle_response(data, time.monotonic())
                except Exception:
                    continue
                if session.established:
                    return session
    raise SystemExit("live_sender: no handshake response from the target")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    identity = load_identity(args.state_dir)
    peer_static = bytes.fromhex(args.target_key)
    network_id, target_id = int(args.network_id, 16), int(args.target_id, 16)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(args.listen_address)
    table = SessionTable(identity.x25519_private)
    session = open_session(sock, table, peer_static, args.address)
    sock.setblocking(False)

    names = corpus.Names(network_id, identity.node_id, target_id, sender_ip=args.own_ip, receiver_ip=args.target_ip,
                         sender_endpoint=args.listen_address)
    if args.mode == "member":
        messages = corpus.inner_messages(names)
    else:
        messages = corpus.member_to_controller_messages(identity, network_id, target_id)
    stranger = Identity.generate()  # not in the network config: its handshakes are refused after the DH
    stranger_table = SessionTable(stranger.x25519_private)
    outer = corpus.outer_packets(names, peer_static)
    rng, mutator = random.Random(args.seed), Mutator(args.seed)
    kinds = [kind for kind, weight in KINDS for _ in range(weight)]
    sent: Counter[str] = Counter()
    recent: list[bytes] = []

    def sealed(plaintext: bytes) -> bytes:
        packet = session.seal(plaintext, time.monotonic())  # type: ignore[attr-defined]
        assert packet is not None, "the session ran out of keys"
        return bytes(packet)

    def next_datagrams() -> tuple[str, list[bytes]]:
        kind = rng.choice(kinds)
        if kind == "sealed":
            return kind, [sealed(mutator.mutate(rng.choice(messages), messages))]
        if kind == "fragmented":
            packet = sealed(mutator.mutate(rng.choice(messages), messages) + bytes(rng.randrange(400)))
            pieces = fragment(packet, rng.choice((200, 600))) if len(packet) > 220 else [packet]
            if rng.random() < 0.3:
                at = rng.randrange(len(pieces))
                pieces[at] = mutator.mutate(pieces[at], pieces, rounds=1)
            return kind, pieces
        if kind == "tampered":
            packet = sealed(rng.choice(messages))
            recent.append(packet)
            del recent[:-64]
            if rng.random() < 0.3:
                return "replayed", [rng.choice(recent)]
            return kind, [mutator.mutate(packet, recent, rounds=1)]
        if kind == "handshake":
            initiation = stranger_table.session_for(peer_static).create_initiation(time.monotonic())
            mutant = mutator.mutate(initiation, outer, rounds=1)
            if len(mutant) == len(initiation) and rng.random() < 0.5:
                mutant = corpus.with_macs(mutant[:-32], peer_static)
            return kind, [mutant]
        return kind, [mutator.mutate(rng.choice(outer), outer)]

    started = time.monotonic()
    total = 0
    while total < args.count:
        due = min(args.count, int((time.monotonic() - started) * args.rate) + 1)
        while total < due:
            kind, datagrams = next_datagrams()
            for datagram in datagrams:
                try:
                    sock.sendto(datagram, args.address)
                except (BlockingIOError, OSError):
                    sent["send_errors"] += 1
            sent[kind] += 1
            total += 1
        try:
            while True:
                sock.recv(65535)  # what the target answers is not looked at; the test checks the target itself
        except (BlockingIOError, OSError):
            pass
        time.sleep(TICK_S)
    print(json.dumps({"sent": total, "seconds": round(time.monotonic() - started, 2), "by_kind": dict(sent),
                      "session": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
