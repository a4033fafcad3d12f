"""The soak's samples: each daemon's RSS, open fds, threads and sessions every few seconds, and their trend verdicts.

A daemon is followed by its logical name (m1, controller, root): churn
restarts some of them, so one series holds several processes, and the trend
test (soak_trend.py) runs on each process's own stretch of the series (a
segment), when that stretch is long enough to tell (MIN_SEGMENT_FRACTION of
the run). The long-lived members, the root and, between its restarts, the
controller give such segments; a churned member's short lives are kept in
the samples but not judged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory import process_tree_memory
from soak_net import SoakNetwork, SoakStepError
from soak_trend import grows_without_bound

MIB = 2**20
MIN_SEGMENT_FRACTION = 1 / 3
# metric -> (absolute allowance, allowance relative to the level): what may come and go without being a leak.
# RSS: a Python daemon's heap moves by an arena or two; fds and threads: a transient socket, a resolver thread;
# sessions and peers: members churned in and out of a 10-member network.
ALLOWANCES: dict[str, tuple[float, float]] = {
    "rss_bytes": (2 * MIB, 0.05),
    "tree_rss_bytes": (2 * MIB, 0.05),
    "fds": (4, 0.0),
    "threads": (2, 0.0),
    "sessions": (3, 0.0),
    "peers": (3, 0.0),
}


def process_figures(pid: int) -> dict[str, int] | None:
    """RSS of the process (VmRSS) and of it with its descendants, its open fds and threads; None when it is gone or a zombie."""
    fields: dict[str, str] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        if "VmRSS" not in fields:  # a zombie has no memory left to count
            return None
        tree_rss_bytes = process_tree_memory(pid)["rss_bytes"]
    except OSError:  # gone meanwhile: churn stops daemons at any moment
        return None
    return {
        "rss_bytes": int(fields["VmRSS"].split()[0]) * 1024,
        "tree_rss_bytes": tree_rss_bytes,
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


class Sampler:
    """Samples every daemon of the network every interval_s on a thread, from start() until stop()."""

    def __init__(self, network: SoakNetwork, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.network = network
        self.interval_s = interval_s
        self.clock = clock
        self.started_s = clock()
        self.series: dict[str, list[dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self.started_s = self.clock()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        # On a fixed grid from the start: a slow sample (a restarting controller's CLI) does not stretch the next interval.
        due_s = self.clock()
        while True:
            self.sample_once()
            due_s += self.interval_s
            if self._stop.wait(max(0.0, due_s - self.clock())):
                return

    def sample_once(self) -> None:
        t_s = round(self.clock() - self.started_s, 2)
        members = {m.name: m for m in self.network.members}
        for label, proc in self.network.daemons().items():
            figures = process_figures(proc.pid) if proc is not None else None
            if figures is None:
                continue  # between a stop and a start: nothing to read
            sample: dict[str, Any] = {"t_s": t_s, "pid": proc.pid if proc else None, **figures}
            try:
                if label in members:
                    sample.update(self.network.sessions(members[label]))
                elif label == "controller":
                    status = self.network.controller_status()
                    sample["sessions"] = status.get("sessions")
                    sample["online_members"] = status.get("online_members")
            except SoakStepError:
                pass  # restarting: the process figures stand alone this time
            self.series.setdefault(label, []).append(sample)


def segments(samples: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The samples cut where the PID changes: one list per process lifetime."""
    out: list[list[dict[str, Any]]] = []
    for sample in samples:
        if not out or out[-1][-1]["pid"] != sample["pid"]:
            out.append([])
        out[-1].append(sample)
    return out


def judge(series: dict[str, list[dict[str, Any]]], run_s: float) -> dict[str, list[dict[str, Any]]]:
    """Per daemon, per process lifetime: its span; when long enough to judge, per metric its first, last, least and
    largest figure and the trend verdict."""
    report: dict[str, list[dict[str, Any]]] = {}
    for label, samples in series.items():
        for segment in segments(samples):
            span_s = segment[-1]["t_s"] - segment[0]["t_s"]
            entry: dict[str, Any] = {"pid": segment[0]["pid"], "from_s": segment[0]["t_s"], "to_s": segment[-1]["t_s"],
                                     "samples": len(segment), "judged": span_s >= MIN_SEGMENT_FRACTION * run_s,
                                     "metrics": {}}
            for metric, (allowance_abs, allowance_rel) in ALLOWANCES.items() if entry["judged"] else ():
                points = [(s["t_s"], float(s[metric])) for s in segment if s.get(metric) is not None]
                if not points:
                    continue
                entry["metrics"][metric] = {"first": points[0][1], "last": points[-1][1],
                                            "min": min(v for _, v in points), "max": max(v for _, v in points),
                                            **grows_without_bound(points, allowance_abs, allowance_rel).to_json()}
            report.setdefault(label, []).append(entry)
    return report


def growing(report: dict[str, list[dict[str, Any]]]) -> list[str]:
    """'label pid N: metric' for every judged series that grows without bound."""
    return [f"{label} pid {entry['pid']}: {metric}"
            for label, entries in report.items() for entry in entries
            for metric, figures in entry["metrics"].items() if figures.get("verdict") == "GROWS"]
