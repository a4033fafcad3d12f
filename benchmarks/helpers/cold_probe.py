"""What a little work costs right after the process slept: evidence for latency.py's hops (issue 17).

Run in a fresh process by latency.py --cold; prints one JSON object:

- "rows": for each gap (0, 1, 10 and 50 ms) spent asleep, and (gaps over 0)
  spent spinning on the CPU instead, before each try, and each piece of work
  (a no-op, a short Python loop, an AEAD seal of a 120-byte frame through
  libsodium and through OpenSSL), TRIES tries, timed with perf_counter_ns
  around the work alone: p50 and p90 in microseconds;
- "interruptions": SPIN_CENSUS_S of spinning on the clock, every step of over
  INTERRUPTION_NS between two reads counted: how often the guest's CPU was
  taken away (timer ticks, the host running others) and for how long.

On a VM whose caches and branch predictors are taken over by others, the
same work costs many times more after a gap than in a hot loop, and a ping
at -i 0.2 or -i 0.01 finds every daemon cold. Spinning through the gap shows
whether staying on the CPU would keep it warm (a busy-poll): if the spun gap
costs as much as the slept one, the cold comes from the interruptions, which
no waiting strategy avoids.
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
SPIN_CENSUS_S = 1.0
INTERRUPTION_NS = 20_000  # a step between two clock reads this long is not the loop's own (~0.1 us)


def spin(gap_s: float) -> None:
    now = time.perf_counter
    until = now() + gap_s
    while now() < until:
        pass


def time_after_gap(work: Callable[[], object], gap_s: float, wait: Callable[[float], None],
                   tries: int = TRIES) -> dict[str, float]:
    took = []
    now_ns = time.perf_counter_ns
    for _ in range(tries):
        wait(gap_s)
        start = now_ns()
        work()
        took.append((now_ns() - start) / 1000)
    took.sort()
    return {"p50_us": round(took[len(took) // 2], 1), "p90_us": round(took[int(0.9 * len(took))], 1)}


def interruption_census(steps_ns: list[int], spun_ns: int, threshold_ns: int = INTERRUPTION_NS) -> dict[str, float]:
    """Steps over threshold_ns between clock reads, out of spun_ns of spinning: rate, p50, max and share of the time."""
    long_steps = sorted(step for step in steps_ns if step > threshold_ns)
    seconds = spun_ns / 1e9
    return {
        "spun_s": round(seconds, 3),
        "threshold_us": threshold_ns / 1000,
        "per_s": round(len(long_steps) / seconds, 1) if seconds else 0.0,
        "p50_us": round(long_steps[len(long_steps) // 2] / 1000, 1) if long_steps else 0.0,
        "max_us": round(long_steps[-1] / 1000, 1) if long_steps else 0.0,
        "share_pct": round(sum(long_steps) / spun_ns * 100, 2) if spun_ns else 0.0,
    }


def spin_census(seconds: float = SPIN_CENSUS_S) -> dict[str, float]:
    now_ns = time.perf_counter_ns
    start = last = now_ns()
    end = start + int(seconds * 1e9)
    steps = []
    while last < end:
        t = now_ns()
        if t - last > INTERRUPTION_NS:
            steps.append(t - last)
        last = t
    return interruption_census(steps, last - start)


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
    rows = []
    work_by_name = workloads()
    for gap_s in GAPS_S:
        for wait_name, wait in (("sleep", time.sleep), ("spin", spin)):
            if wait_name == "spin" and not gap_s:
                continue  # no gap: the two are the same
            for name, work in work_by_name.items():
                rows.append({"work": name, "wait": wait_name, "gap_ms": gap_s * 1000, "tries": TRIES,
                             **time_after_gap(work, gap_s, wait)})
    print(json.dumps({"rows": rows, "interruptions": spin_census()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
