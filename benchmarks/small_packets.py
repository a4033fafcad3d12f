"""net.py's latency, small-packet and memory figures (issue 17), for every system of one run.

Per system and round, after the TCP stream:

- ping h1 -> h2 at two rates: -i 0.2 (25 pings, interactive use) and
  -i 0.01 (500 pings, a game or VoIP stream): avg and max RTT, loss;
- UDP floods with iperf3 (-u -b 0, one stream, 64-byte and 1400-byte
  payloads): packets delivered per second at the receiver, and loss;
- the overlay daemons' RSS (VmRSS summed over each daemon's process) idle,
  before any traffic, and the peak sampled every 0.2 s while the TCP stream
  and the UDP floods ran.

Targets (issue 17, as ratios within one run): added RTT (system minus the raw
path) no more than tinc's at both rates; the worst of the 500 -i 0.01 replies
no worse than tinc's worst, or 2 ms; 64-byte UDP delivered at least 0.4 of
the raw path's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from l2mesh.lab import in_namespace, run

PING_RATES = (("0.2", 25), ("0.01", 500))
UDP_PAYLOADS = (64, 1400)
RSS_SAMPLE_INTERVAL_S = 0.2
UDP64_TARGET_RATIO = 0.4
WORST_REPLY_ALLOWANCE_MS = 2.0

_RTT_SUMMARY = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/")
_LOSS = re.compile(r"([\d.]+)% packet loss")


def ping_key(interval: str) -> str:
    return "ping_" + interval.replace(".", "_")


def udp_key(payload: int) -> str:
    return f"udp{payload}"


def ping_stats(ns: str, target: str, interval: str, count: int) -> dict[str, float | None]:
    """avg and max RTT (ms) and loss (%) of count pings, from ping's summary lines."""
    timeout_s = float(interval) * count + 15
    done = run(in_namespace(ns, ["ping", "-q", "-c", str(count), "-i", interval, "-W", "1", target]), timeout_s, check=False)
    rtt, loss = _RTT_SUMMARY.search(done.stdout), _LOSS.search(done.stdout)
    return {
        "avg_ms": float(rtt.group(2)) if rtt else None,
        "max_ms": float(rtt.group(3)) if rtt else None,
        "loss_pct": float(loss.group(1)) if loss else None,
    }


def udp_delivered(report: dict[str, Any], payload: int) -> dict[str, float]:
    """Packets per second the iperf3 receiver got, and the loss it counted, from a -u -J report."""
    received = report["end"]["sum_received"]
    seconds = max(float(received["seconds"]), 1e-6)
    return {
        "pps": round(received["bytes"] / payload / seconds),
        "loss_pct": round(float(received.get("lost_percent") or 0.0), 2),
    }


def rss_bytes(pid: int) -> int:
    """VmRSS of one process; 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class RssPeak:
    """The largest RSS seen per daemon while a block of work ran (sampled on a thread)."""

    pids: dict[str, int]

    def __post_init__(self) -> None:
        self.peak = {label: rss_bytes(pid) for label, pid in self.pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            for label, pid in self.pids.items():
                self.peak[label] = max(self.peak[label], rss_bytes(pid))

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_small(
    ns: str, target: str, seconds: int, iperf: Callable[[list[str], int], dict[str, Any]]
) -> dict[str, Any]:
    """The ping and UDP figures for one system that is up; iperf(extra_args, seconds) runs one iperf3 client."""
    row: dict[str, Any] = {}
    for interval, count in PING_RATES:
        row[ping_key(interval)] = ping_stats(ns, target, interval, count)
    for payload in UDP_PAYLOADS:
        report = iperf(["-u", "-b", "0", "-l", str(payload)], seconds)
        row[udp_key(payload)] = udp_delivered(report, payload)
    return row


def median_of(rows: Iterable[dict[str, Any]], key: str, field: str) -> float | None:
    values = sorted(v for r in rows if (v := (r.get(key) or {}).get(field)) is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def summarize_small(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over one system's measured rounds (rows are that system's rows)."""
    summary: dict[str, Any] = {}
    for interval, _ in PING_RATES:
        key = ping_key(interval)
        summary[key] = {"avg_ms": median_of(rows, key, "avg_ms"), "max_ms": median_of(rows, key, "max_ms")}
    for payload in UDP_PAYLOADS:
        key = udp_key(payload)
        summary[key] = {"pps": median_of(rows, key, "pps"), "loss_pct": median_of(rows, key, "loss_pct")}
    for phase in ("rss_idle_bytes", "rss_load_bytes"):
        worst = [max(r[phase].values()) for r in rows if r.get(phase)]
        summary[phase] = sorted(worst)[len(worst) // 2] if worst else None
    return summary


def added(value: float | None, base: float | None) -> float | None:
    return round(value - base, 3) if value is not None and base is not None else None


def judge(summary: dict[str, dict[str, Any]], system: str = "l2mesh") -> dict[str, Any]:
    """Issue 17's targets for one system against the raw path ("underlay") and tinc of the same run."""
    mine, raw, tinc = summary.get(system, {}), summary.get("underlay", {}), summary.get("tinc", {})
    verdict: dict[str, Any] = {}
    for interval, _ in PING_RATES:
        key = ping_key(interval)
        mine_added = added((mine.get(key) or {}).get("avg_ms"), (raw.get(key) or {}).get("avg_ms"))
        tinc_added = added((tinc.get(key) or {}).get("avg_ms"), (raw.get(key) or {}).get("avg_ms"))
        verdict[f"{key}_added_ms"] = mine_added
        verdict[f"{key}_tinc_added_ms"] = tinc_added
        verdict[f"{key}_added_met"] = None if mine_added is None or tinc_added is None else mine_added <= tinc_added
    worst_key = ping_key(PING_RATES[-1][0])
    mine_worst = (mine.get(worst_key) or {}).get("max_ms")
    tinc_worst = (tinc.get(worst_key) or {}).get("max_ms")
    allowed = max(tinc_worst or 0.0, WORST_REPLY_ALLOWANCE_MS)
    verdict["worst_reply_ms"] = mine_worst
    verdict["worst_reply_allowed_ms"] = allowed
    verdict["worst_reply_met"] = None if mine_worst is None else mine_worst <= allowed
    mine_pps = (mine.get(udp_key(64)) or {}).get("pps")
    raw_pps = (raw.get(udp_key(64)) or {}).get("pps")
    ratio = round(mine_pps / raw_pps, 3) if mine_pps and raw_pps else None
    verdict["udp64_ratio_to_underlay"] = ratio
    verdict["udp64_met"] = None if ratio is None else ratio >= UDP64_TARGET_RATIO
    return verdict
