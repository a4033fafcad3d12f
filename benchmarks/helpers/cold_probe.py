"""What a little work costs right after the process slept: evidence for latency.py's hops (issue 17).

Run in a fresh process by latency.py --cold; prints one JSON object. For
each gap (0, 1, 10 and 50 ms asleep before each try) and each piece of work
(a no-op, a short Python loop, an AEAD seal of a 120-byte frame through
libsodium and through OpenSSL), TRIES tries, timed with perf_counter_ns
around the work alone: p50 and p90 in microseconds. On a VM whose caches
and branch predictors are taken over by others while a process sleeps, the
same work costs many times more after a sleep than in a hot loop, and a
ping at -i 0.2 or -i 0.01 finds every daemon asleep.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from l2mesh.crypto.aead import AeadScratch, TransportKey

TRIES = 60
GAPS_S = (0.0, 0.001, 0.01, 0.05)
FRAME = bytes(120)
HEADER = bytes(16)


def time_after_sleep(work: Callable[[], object], gap_s: float, tries: int = TRIES) -> dict[str, float]:
    took = []
    now_ns, sleep = time.perf_counter_ns, time.sleep
    for _ in range(tries):
        sleep(gap_s)
        start = now_ns()
        work()
        took.append((now_ns() - start) / 1000)
    took.sort()
    return {"p50_us": round(took[len(took) // 2], 1), "p90_us": round(took[int(0.9 * len(took))], 1)}


def workloads() -> dict[str, Callable[[], object]]:
    key = TransportKey(bytes(range(32)))
    counter = [0]
    scratch = bytearray(200)

    def noop() -> None:
        pass

    def python_loop() -> None:
        for i in range(20):
            scratch[i] = i

    def sealer(openssl: bool) -> Callable[[], object]:
        aead = AeadScratch(openssl=openssl)

        def seal() -> object:
            counter[0] += 1
            return aead.seal(key, counter[0], HEADER, FRAME)

        return seal

    found: dict[str, Callable[[], object]] = {"no-op": noop, "python loop (20 stores)": python_loop,
                                               "seal 120 B, libsodium": sealer(False)}
    try:
        openssl_seal = sealer(True)
        openssl_seal()
        found["seal 120 B, OpenSSL"] = openssl_seal
    except Exception as exc:  # no pyca/cryptography: the libsodium figures stand alone
        print(f"cold_probe: no OpenSSL seal ({exc})", file=sys.stderr)
    return found


def main() -> int:
    results = []
    work_by_name = workloads()
    for gap_s in GAPS_S:
        for name, work in work_by_name.items():
            results.append({"work": name, "sleep_ms": gap_s * 1000, "tries": TRIES, **time_after_sleep(work, gap_s)})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
