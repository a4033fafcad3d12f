"""Reading stage_probe.py's dumps: a daemon's stamps into hops (TAP -> UDP "out", UDP -> TAP "in") and per-stage percentiles.

A wake-up is what the reactor did from one poll return to the next poll's
entry. One that drained exactly one frame from the TAP (and nothing from
the socket) is an "out" hop; one that received exactly one datagram (and
read nothing from the TAP) and wrote a frame to the TAP is an "in" hop.
Anything else (timer ticks, calls from the control plane, keepalives, two
frames in one wake-up) is counted by why it was left out. Of the hops, only
those with the most common frame (out) or datagram (in) size are kept: the
pings', not ARP's. A stage is the time between two stamps of one hop, in
microseconds; a stamp missing from a hop (a wrapper that could not be
installed) leaves the stages it bounds out of that hop.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Stamp = tuple[str, int, int]  # stage name, CLOCK_MONOTONIC ns, extra (a size, an event count)
Hop = dict[str, tuple[int, int]]  # stamp name -> (ns, extra), the first of each in the wake-up
MATCH_WINDOW_NS = 1_000_000  # a datagram reaches the other daemon's socket well within 1 ms of its sendto

# (stage, from stamp, to stamp), in the order a packet meets them; the last ones span several.
OUT_STAGES = (
    ("wake", "poll_return", "tap_drain_enter"),
    ("read", "tap_drain_enter", "tap_read"),
    ("switch", "tap_read", "switch_out"),
    ("build", "switch_out", "seal_enter"),
    ("seal", "seal_enter", "seal_done"),
    ("hand-off", "seal_done", "send_enter"),
    ("send", "send_enter", "send_done"),
    ("drain exit", "send_done", "tap_drain_exit"),
    ("loop end", "tap_drain_exit", "loop_end"),
    ("poll to sent", "poll_return", "send_done"),
    ("whole wake-up", "poll_return", "loop_end"),
)
IN_STAGES = (
    ("kernel to poll", "kernel_rx", "poll_return"),
    ("wake", "poll_return", "udp_drain_enter"),
    ("receive", "udp_drain_enter", "udp_received"),
    ("parse", "udp_received", "open_enter"),
    ("open", "open_enter", "open_done"),
    ("switch", "open_done", "switch_in"),
    ("hand-off", "switch_in", "tap_write_enter"),
    ("TAP write", "tap_write_enter", "tap_write_done"),
    ("hand back", "tap_write_done", "datagram_handled"),
    ("drain tail", "datagram_handled", "udp_drain_exit"),
    ("loop end", "udp_drain_exit", "loop_end"),
    ("poll to written", "poll_return", "tap_write_done"),
    ("kernel to written", "kernel_rx", "tap_write_done"),
    ("whole wake-up", "poll_return", "loop_end"),
)
STAGES = {"out": OUT_STAGES, "in": IN_STAGES}
# What each stage holds, for the README and the printout's legend.
STAGE_NOTES = {
    "out": {
        "wake": "epoll returned -> the TAP's drain callback entered",
        "read": "os.read of the frame",
        "switch": "vnet header check, network lookup, NetworkSwitch.route_from_tap",
        "build": "frame header, peer and session lookup, counters, nonce (up to the AEAD call)",
        "seal": "AeadScratch.seal (ChaCha20-Poly1305 of ~130 bytes)",
        "hand-off": "put_on_path to the sendto: straight there for a lone frame; a frame held in a run "
                    "(the wake-up before read several) also waits for the next os.read (EAGAIN) and release()",
        "send": "the sendto system call (veth, router, veth: the kernel's forwarding runs in it)",
        "drain exit": "after the send: the next os.read (EAGAIN) when the frame went alone, then out of the drain callback",
        "loop end": "the reactor's after_wakeup and tick check, until the next epoll",
    },
    "in": {
        "kernel to poll": "the kernel stamped the datagram (SO_TIMESTAMPNS) -> epoll returned",
        "wake": "epoll returned -> the socket's drain callback entered",
        "receive": "recvmsg_into (and the probe's control-message parsing)",
        "parse": "datagram dispatch, header unpack, keypair and replay checks (up to the AEAD call)",
        "open": "AeadScratch.open",
        "switch": "rest of the session open, peer and network lookup, NetworkSwitch.accept_from_peer",
        "hand-off": "up to the TAP write",
        "TAP write": "the writev system call on the TAP (the kernel's receive path, often the ping reply, runs in it)",
        "hand back": "back out of datagram_received",
        "drain tail": "the next recvmsg_into (EAGAIN)",
        "loop end": "the reactor's after_wakeup and tick check, until the next epoll",
    },
}


def load(path: Path) -> list[Stamp]:
    """A dump's stamps in recording order; ValueError for a file that is not one."""
    try:
        data = json.loads(path.read_text())
        names: list[str] = data["stage_names"]
        codes, times, extras = data["codes"], data["times_ns"], data["extras"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a stage log ({exc})") from None
    if not len(codes) == len(times) == len(extras):
        raise ValueError(f"{path}: codes, times_ns and extras differ in length")
    try:
        return [(names[code], int(t), int(extra)) for code, t, extra in zip(codes, times, extras)]
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a stamp does not read ({exc})") from None


def wakeups(stamps: Iterable[Stamp]) -> list[list[Stamp]]:
    """Stamps cut at each poll return; what came before the first is dropped."""
    out: list[list[Stamp]] = []
    for stamp in stamps:
        if stamp[0] == "poll_return":
            out.append([stamp])
        elif out:
            out[-1].append(stamp)
    return out


def classify(wakeup: Sequence[Stamp]) -> tuple[str, Hop] | str:
    """("out" or "in", first (time, extra) of each stamp name) for a one-packet hop, else why it is no hop."""
    counts = Counter(name for name, _, _ in wakeup)
    first: Hop = {}
    for name, t, extra in wakeup:
        first.setdefault(name, (t, extra))
    tap, udp = counts["tap_drain_enter"], counts["udp_drain_enter"]
    if tap and udp:
        return "TAP and socket in one wake-up"
    if tap:
        if tap > 1 or counts["tap_read"] != 1:
            return "not one TAP frame"
        return "out", first
    if udp:
        if udp > 1 or counts["udp_received"] != 1:
            return "not one datagram"
        if "tap_write_done" not in first:
            return "datagram without TAP write"
        return "in", first
    return "no packet"


def hop_size(kind: str, stamps: Hop) -> int:
    """The TAP frame's length (vnet header included) for out, the datagram's for in."""
    return stamps["tap_read" if kind == "out" else "udp_received"][1]


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p90, p99 and max (the value at that rank, no interpolation), to 0.1."""
    if not values:
        return {"n": 0, "p50_us": None, "p90_us": None, "p99_us": None, "max_us": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"n": len(ordered), "p50_us": at(0.5), "p90_us": at(0.9), "p99_us": at(0.99), "max_us": round(ordered[-1], 1)}


def ping_hops(stamps: Iterable[Stamp], start_ns: int, end_ns: int) -> tuple[dict[str, list[Hop]], Counter[str]]:
    """The one-packet hops of each kind whose poll returned in [start_ns, end_ns], of the pings' size; why others were left out."""
    skipped: Counter[str] = Counter()
    hops: dict[str, list[Hop]] = {"out": [], "in": []}
    for wakeup in wakeups(stamps):
        if not start_ns <= wakeup[0][1] <= end_ns:
            continue
        verdict = classify(wakeup)
        if isinstance(verdict, str):
            skipped[verdict] += 1
        else:
            hops[verdict[0]].append(verdict[1])
    for kind, found in hops.items():
        size = statistics.mode(hop_size(kind, h) for h in found) if found else None
        hops[kind] = [h for h in found if hop_size(kind, h) == size]
        skipped[f"{kind}: other size"] += len(found) - len(hops[kind])
    return hops, skipped


def summarize(stamps: Iterable[Stamp], start_ns: int, end_ns: int) -> dict[str, Any]:
    """Per hop kind, per stage percentiles of the pings' hops whose poll returned in [start_ns, end_ns]."""
    hops, skipped = ping_hops(stamps, start_ns, end_ns)
    result: dict[str, Any] = {}
    for kind, kept in hops.items():
        stages = {
            stage: percentiles([(h[to][0] - h[since][0]) / 1000 for h in kept if since in h and to in h])
            for stage, since, to in STAGES[kind]
        }
        result[kind] = {"hops": len(kept), "size_bytes": hop_size(kind, kept[0]) if kept else None, "stages": stages}
    result["skipped"] = {reason: n for reason, n in sorted(skipped.items()) if n}
    return result


def send_overlap(sender_out: list[Hop], receiver_in: list[Hop]) -> dict[str, Any]:
    """Where the receiving daemon was when the sender's sendto returned, from the sender's sendto entry (µs).

    Both daemons stamp CLOCK_MONOTONIC, so an out hop pairs with the
    receiver's first in hop whose datagram the kernel stamped within
    MATCH_WINDOW_NS after the sendto began. A sendto that returns after the
    receiver wrote the frame to its TAP did not take that long for its own
    work: the sender was off the CPU (the receiver, woken on the same CPU,
    ran first).
    """
    arrivals = sorted((h["kernel_rx"][0], i) for i, h in enumerate(receiver_in) if "kernel_rx" in h and "tap_write_done" in h)
    times = [t for t, _ in arrivals]
    columns: dict[str, list[float]] = {"peer kernel_rx": [], "peer poll_return": [], "peer tap_write_done": [], "own send_done": []}
    outlasted = 0
    for hop in sender_out:
        if "send_enter" not in hop or "send_done" not in hop:
            continue
        sent = hop["send_enter"][0]
        at = bisect.bisect_left(times, sent)
        if at == len(times) or times[at] > sent + MATCH_WINDOW_NS:
            continue
        peer = receiver_in[arrivals[at][1]]
        for column, (who, name) in zip(columns, (("peer", "kernel_rx"), ("peer", "poll_return"), ("peer", "tap_write_done"), ("own", "send_done"))):
            columns[column].append(((peer if who == "peer" else hop)[name][0] - sent) / 1000)
        outlasted += hop["send_done"][0] > peer["tap_write_done"][0]
    pairs = len(columns["own send_done"])
    return {"pairs": pairs, "p50_us": {c: percentiles(v)["p50_us"] for c, v in columns.items()},
            "sendto_outlasts_peer_tap_write": round(outlasted / pairs, 2) if pairs else None}
