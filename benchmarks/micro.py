"""Per-frame cost of the protocol's hot pieces, in microseconds (no network, no root).

Prints a table and writes benchmarks/results/micro-<timestamp>.json. Each
figure is the median of several timeit repeats; compare them within one run
(the construct vs struct rows, pynacl's call vs the preallocated one), since
the machine is shared.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import timeit
from pathlib import Path

import dpkt
import nacl.bindings

from l2mesh.crypto.aead import AeadScratch, TransportKey
from l2mesh.crypto.noise import public_key
from l2mesh.ids import make_network_id, member_mac
from l2mesh.rules import NO_RULES, parse_rules
from l2mesh.rules.compile import compile_rules
from l2mesh.rules.fields import frame_fields
from l2mesh.session import SessionTable
from l2mesh.switch import MemberPort, NetworkSwitch
from l2mesh.wire.messages import FRAME_HEADER, Frame
from l2mesh.wire.packets import TRANSPORT_HEADER, Transport, TransportHeader

FRAME_BYTES = 1400
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RULES_20 = Path(__file__).resolve().parent / "rules20.txt"  # the last rule is the one a TCP frame matches


def rule_rows() -> list[tuple[str, float]]:
    """Per-frame cost of flow rules: evaluation alone, and the switch's both ends with and without rules."""
    network_id = make_network_id(0x0A1B2C3D4E, 1)
    a, b = 0x1000000001, 0x1000000002
    mac_a, mac_b = member_mac(a, network_id), member_mac(b, network_id)
    segment = dpkt.tcp.TCP(sport=45678, dport=5201, flags=dpkt.tcp.TH_ACK, data=b"\0" * 1348)
    ip = dpkt.ip.IP(src=bytes([10, 147, 17, 1]), dst=bytes([10, 147, 17, 2]), p=dpkt.ip.IP_PROTO_TCP, data=segment)
    frame = bytes(dpkt.ethernet.Ethernet(src=mac_a, dst=mac_b, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))
    ruleset = parse_rules(RULES_20.read_text())
    assert len(ruleset.rules) == 20
    compiled = compile_rules(ruleset.rules, a, {})
    assert compiled.outbound.first_match(frame_fields(frame), b) == 19, "the frame must be matched by the last rule"
    fields = frame_fields(frame)

    def switch(local: int, rules) -> NetworkSwitch:
        made = NetworkSwitch(network_id, local, member_mac(local, network_id))
        made.set_members([MemberPort(a, mac_a), MemberPort(b, mac_b)])
        made.set_rules(rules)
        return made

    sender, ruled_sender = switch(a, NO_RULES), switch(a, ruleset)
    receiver, ruled_receiver = switch(b, NO_RULES), switch(b, ruleset)
    assert ruled_sender.route_from_tap(frame, 0.0) == b and ruled_receiver.accept_from_peer(a, frame, 0.0)
    return [
        ("rules: read a TCP/IPv4 frame's fields", per_call_us(lambda: frame_fields(frame), 50000)),
        ("rules: 20-rule tables, matched by the last rule", per_call_us(lambda: compiled.outbound.evaluate(fields, b), 50000)),
        ("rules: the same, answer remembered for the flow", per_call_us(lambda: compiled.outbound.first_match(fields, b), 50000)),
        ("rules: fields + remembered answer, per frame and end", per_call_us(lambda: compiled.outbound.first_match(frame_fields(frame), b), 50000)),
        ("switch, sending end, unicast, no rules", per_call_us(lambda: sender.route_from_tap(frame, 0.0), 50000)),
        ("switch, sending end, unicast, 20 rules", per_call_us(lambda: ruled_sender.route_from_tap(frame, 0.0), 50000)),
        ("switch, receiving end, unicast, no rules", per_call_us(lambda: receiver.accept_from_peer(a, frame, 0.0), 50000)),
        ("switch, receiving end, unicast, 20 rules", per_call_us(lambda: ruled_receiver.accept_from_peer(a, frame, 0.0), 50000)),
    ]


def per_call_us(stmt, number: int, repeat: int = 7) -> float:
    times = timeit.repeat(stmt, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def main() -> int:
    frame = os.urandom(FRAME_BYTES)
    key_bytes = os.urandom(32)
    key = TransportKey(key_bytes)
    scratch = AeadScratch(openssl=False)
    openssl = AeadScratch(openssl=True)
    super_frame = os.urandom(65536)
    header = TRANSPORT_HEADER.pack(3, 1234, 99)
    built = TransportHeader.build({"receiver_index": 1234, "counter": 99})
    sealed = bytes(scratch.seal(key, 99, header, frame))
    nonce = b"\0\0\0\0" + (99).to_bytes(8, "little")
    nacl_ct = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(frame, None, nonce, key_bytes)

    a_priv, b_priv = os.urandom(32), os.urandom(32)
    table_a, table_b = SessionTable(a_priv), SessionTable(b_priv)
    session_a = table_a.session_for(public_key(b_priv))
    result = table_b.handle_initiation(session_a.create_initiation(0.0), 0.0, "bench")
    table_a.handle_response(result.response, 0.0)
    inner = FRAME_HEADER.pack(1, 0x1122334455667788) + frame

    def seal_open() -> None:
        packet = session_a.seal(inner, 1.0)
        table_b.open(packet, 1.0)

    rows = [
        ("transport header build, construct", per_call_us(lambda: TransportHeader.build({"receiver_index": 1234, "counter": 99}), 20000)),
        ("transport header parse, construct", per_call_us(lambda: TransportHeader.parse(built), 20000)),
        ("transport header pack, struct (hot path)", per_call_us(lambda: TRANSPORT_HEADER.pack(3, 1234, 99), 200000)),
        ("transport header unpack, struct (hot path)", per_call_us(lambda: TRANSPORT_HEADER.unpack_from(sealed), 200000)),
        ("frame message parse, construct", per_call_us(lambda: Frame.parse(inner), 20000)),
        ("encrypt 1400 B, pynacl high-level call", per_call_us(lambda: nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(frame, None, nonce, key_bytes), 20000)),
        ("decrypt 1400 B, pynacl high-level call", per_call_us(lambda: nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(nacl_ct, None, nonce, key_bytes), 20000)),
        ("encrypt 1400 B, libsodium into scratch (idle process)", per_call_us(lambda: scratch.seal(key, 99, header, frame), 20000)),
        ("decrypt 1400 B, libsodium into scratch (idle process)", per_call_us(lambda: scratch.open(key, 99, memoryview(sealed)[16:]), 20000)),
        ("encrypt 1400 B, OpenSSL into scratch (busy process)", per_call_us(lambda: openssl.seal(key, 99, header, frame), 20000)),
        ("decrypt 1400 B, OpenSSL into scratch (busy process)", per_call_us(lambda: openssl.open(key, 99, memoryview(sealed)[16:]), 20000)),
        ("encrypt 64 B, libsodium into scratch", per_call_us(lambda: scratch.seal(key, 99, header, frame[:64]), 20000)),
        ("encrypt 64 B, OpenSSL into scratch", per_call_us(lambda: openssl.seal(key, 99, header, frame[:64]), 20000)),
        ("encrypt 64 KiB super-frame, libsodium into scratch", per_call_us(lambda: scratch.seal(key, 99, header, super_frame), 2000)),
        ("encrypt 64 KiB super-frame, OpenSSL into scratch", per_call_us(lambda: openssl.seal(key, 99, header, super_frame), 2000)),
        ("full seal + open of a 1400 B frame (session layer)", per_call_us(seal_open, 20000)),
        *rule_rows(),
    ]
    _ = Transport  # the definition the fast path mirrors
    width = max(len(name) for name, _ in rows)
    print(f"{'operation'.ljust(width)}  µs/frame")
    for name, micros in rows:
        print(f"{name.ljust(width)}  {micros:8.2f}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS_DIR / f"micro-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "micro",
                "timestamp": stamp,
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "frame_bytes": FRAME_BYTES,
                "us_per_frame": {name: round(micros, 3) for name, micros in rows},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
