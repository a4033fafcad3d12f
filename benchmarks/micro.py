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

import nacl.bindings

from l2mesh.crypto.aead import AeadScratch, TransportKey
from l2mesh.crypto.noise import public_key
from l2mesh.session import SessionTable
from l2mesh.wire.messages import FRAME_HEADER, Frame
from l2mesh.wire.packets import TRANSPORT_HEADER, Transport, TransportHeader

FRAME_BYTES = 1400
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def per_call_us(stmt, number: int, repeat: int = 7) -> float:
    times = timeit.repeat(stmt, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def main() -> int:
    frame = os.urandom(FRAME_BYTES)
    key_bytes = os.urandom(32)
    key = TransportKey(key_bytes)
    scratch = AeadScratch()
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
        ("encrypt 1400 B, preallocated cffi (hot path)", per_call_us(lambda: scratch.seal(key, 99, header, frame), 20000)),
        ("decrypt 1400 B, preallocated cffi (hot path)", per_call_us(lambda: scratch.open(key, 99, memoryview(sealed)[16:]), 20000)),
        ("full seal + open of a 1400 B frame (session layer)", per_call_us(seal_open, 20000)),
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
