"""Scale benchmark: many members as sans-IO cores in one process against one controller, and against two on PostgreSQL.

Everything is the real code and the real wire: members are NodeCores (or,
in part 1b, light members: scale_light.py) and the controller a
ControllerCore on SQLite, wired by the unit tests' in-memory network
(tests/unit/harness.py: real Noise handshakes, real sealed datagrams,
configs and deltas signed and verified; the storage writer played
synchronously after every input, as the tests do). Time on that network
is fake; every figure below is measured with the process's own clocks.

Part 1, a ladder of sizes up to --members (every member a full NodeCore):
  storm       all pre-authorized members join at once: wall time until all
              are OK, and until all hold a config listing every member;
              the controller's CPU seconds (its calls only, thread time).
              Joins are pushed coalesced (PUSH_COALESCE_S in the core).
  change      one admin change (network rename, a new revision) committed
              and pushed -> the last member applied that revision.
  deauth      one member deauthorized -> every other member dropped it
              (gone from its config and its peer table).
  memory      the controller core's retained size per member (its object
              graph walked, gc.get_referents) and the process's RSS.
  A size climbs to the next only when every phase finished within
  --phase-timeout; the first that does not is recorded as such. A size is
  skipped when every member holding every other (n^2 peer entries, at the
  bytes per peer measured in part 2) would not fit in the memory budget.
  All cores share one CPU here, so "serial" figures add every member's
  processing; "deployed" = the controller's push (commit until its last
  datagram was handed over) + the slowest member's processing of its
  datagrams, as when each member runs on its own machine (no network
  latency counted).

Part 1b, --light members (default 10,000) that fit where full cores do not
(scale_light.py: each a real Noise session with the controller and the real
Membership machine; one parsed start config shared by all):
  rejoin      members holding the current config come online at once
              (handshakes, at most 1,000 a second by the controller's limit;
              requests; "yours is current" answers).
  change      one admin change -> every member verified and applied the
              delta (NetconfDelta parse, verify_signed_delta, apply_delta).
  deauth      one member deauthorized -> every other member's config no
              longer lists it; the member itself ACCESS_DENIED.
  cold storm  --light-storm members authorized by id join at once: until
              every member has its first answer and no push is held back
              (whole configs opened and counted, not parsed).

Part 2, one full member core holding a --members network: the other
members are written to storage directly (authorized, with keys and
endpoints, offline), the controller restarted on it, then one NodeCore
joins. Figures: member bytes per idle known peer (tracemalloc: what a
member joined to the big network retains minus what one joined to a
2-member network retains, over the difference in peers), the member's CPU
to verify and apply the config, the controller's CPU for one commit + push
of it (one change reaching every online member is measured in part 1b:
the delta is signed once per change, so no per-member extrapolation).

Part 3, two controller instances (one identity) on one PostgreSQL schema
(tests/pg_server.py), --pair-members full NodeCores split between them;
each instance's commits announced to the other by calling its
external_change() (what pg_listen does on NOTIFY): the storm on both, a
change committed through B until A's members applied it, and failover: a
change committed through A that A never pushes (it stops at once), until
every one of A's members is served by B and holds that change.

Usage: .venv/bin/python benchmarks/scale.py [--members N] [--light N] [--light-storm N] [--pair-members N] ...
No root, no network. Result: benchmarks/results/scale-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import ipaddress
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, FunctionType, ModuleType
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.unit.harness: the in-process wiring the unit tests use
sys.path.insert(0, str(REPO / "benchmarks"))  # nsbench, control, next to this script
import control  # noqa: E402
import nsbench  # noqa: E402

from l2mesh.controller import admin  # noqa: E402
from l2mesh.controller.changes import Committed  # noqa: E402
from l2mesh.controller.instances import HEARTBEAT_S  # noqa: E402
from l2mesh.controller.model import Network  # noqa: E402
from l2mesh.controller.model import Member as MemberRow  # noqa: E402
from l2mesh.crypto.aead import AeadScratch  # noqa: E402
from l2mesh.identity import Identity  # noqa: E402
from l2mesh.netconf_delta import DeltaBase  # noqa: E402
from l2mesh.node.events import NetworkStatus  # noqa: E402
from scale_light import LightMember  # noqa: E402
from tests.unit.recording import RecordingTransmit  # noqa: E402
from tests.unit.harness import CONTROLLER_ENDPOINT, TICK_S, Controller, FakeClock, Member, Sent, World  # noqa: E402

nsbench.set_program("scale")

DEFAULT_MEMBERS = 10_000
LADDER = (50, 100, 200, 500, 1000, 2000, 5000, 10_000)
DEFAULT_LIGHT_MEMBERS = 10_000
DEFAULT_LIGHT_STORM_MEMBERS = 1000
DEFAULT_PAIR_MEMBERS = 300
DEFAULT_PHASE_TIMEOUT_S = 60.0
DEFAULT_MAX_SECONDS = 200.0
MEMORY_BUDGET_SHARE = 0.35  # of MemAvailable (a shared machine), for one size of part 1
POOL = "10.147.0.0/16"
FIRST_ENDPOINT = int(ipaddress.IPv4Address("198.18.0.2"))  # members at 198.18.0.2, .3, ... (198.18.0.0/15)
CONVERGE_FAKE_S = 30.0  # fake seconds of timers (retries) allowed after the first delivery round

# Targets from the issue.
TARGET_CHANGE_S = 10.0
TARGET_PEER_BYTES = 4096
TARGET_FAILOVER_S = 5.0


class PhaseTimeout(Exception):
    """A phase ran past its cap (raised from SIGALRM, wherever the code was)."""


@dataclass
class Cap:
    fired: bool = False


@contextmanager
def time_cap(seconds: float) -> Iterator[Cap]:
    """Raise PhaseTimeout after `seconds` of wall time; one controller push can take minutes and is not a loop we own.

    Raised wherever the code is, it may surface as another error (storage cleaning up after it): cap.fired tells.
    """
    cap = Cap()

    def expire(signum: int, frame: FrameType | None) -> None:
        cap.fired = True
        raise PhaseTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield cap
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ timed parties
class TimedController(Controller):
    """The harness's controller, with the CPU spent in its calls (storage commits included) added up."""

    cpu_s = 0.0

    def _timed(self, call: Callable[[], Any]) -> Any:
        start = time.thread_time()
        try:
            return call()
        finally:
            self.cpu_s += time.thread_time() - start

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self._timed(lambda: Controller.receive(self, data, source, now))

    def tick(self, now: float) -> None:
        self._timed(lambda: Controller.tick(self, now))

    def _admin(self, change: Any) -> Any:
        return self._timed(lambda: Controller._admin(self, change))


@dataclass(eq=False)
class TimedMember(Member):
    """A harness member with its CPU per phase, and the moment a phase's condition first held for it."""

    cpu_s: float = 0.0
    goal: Callable[["TimedMember"], bool] | None = None
    reached_s: float | None = None  # perf_counter
    _seen_config: object = field(default=None, repr=False)

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        start = time.thread_time()
        Member.receive(self, data, source, now)
        self.cpu_s += time.thread_time() - start
        if self.goal is not None and self.reached_s is None:
            config = self.config()
            if config is not self._seen_config or config is None:  # the goals look at configs: check on change only
                self._seen_config = config
                if self.goal(self):
                    self.reached_s = time.perf_counter()

    def aim(self, goal: Callable[["TimedMember"], bool] | None) -> None:
        self.cpu_s, self.goal, self.reached_s, self._seen_config = 0.0, goal, None, object()
        if goal is not None and goal(self):
            self.reached_s = time.perf_counter()


class Tally(list):  # type: ignore[type-arg]
    """Stands in for the fake network's log: counts datagrams and bytes instead of keeping them (they add up to GBs)."""

    def __init__(self) -> None:
        super().__init__()
        self.datagrams = 0
        self.bytes = 0
        self.from_controller = 0
        self.controller_bytes = 0

    def append(self, sent: Sent) -> None:  # type: ignore[override]
        self.datagrams += 1
        self.bytes += len(sent.data)
        if isinstance(sent.sender, Controller):
            self.from_controller += 1
            self.controller_bytes += len(sent.data)

    def take(self) -> dict[str, int]:
        counts = {"datagrams": self.datagrams, "bytes": self.bytes, "controller_datagrams": self.from_controller,
                  "controller_bytes": self.controller_bytes}
        self.datagrams = self.bytes = self.from_controller = self.controller_bytes = 0
        return counts


def database(path: Path) -> Any:
    """What the harness's Controller opens: a --db URL once the storage back-ends came (sqlite:///PATH), a path before."""
    if "storage_url" in inspect.signature(Controller.__init__).parameters:
        return f"sqlite://{path.absolute()}"
    return path


def member_endpoint(index: int) -> tuple[str, int]:
    return (str(ipaddress.IPv4Address(FIRST_ENDPOINT + index)), 9993)


class ScaleWorld(World):
    """A harness world with a timed controller, timed members and a network that keeps no log."""

    def __init__(self, work: Path) -> None:
        super().__init__()
        work.mkdir(parents=True, exist_ok=True)
        self.tally = Tally()
        self.network.log = self.tally
        self.controller = self.timed = TimedController(database(work / "controller.db"), self.clock)
        self.network.attach(self.timed)

    def add_members(self, identities: Sequence[Identity], network_id: int) -> list[TimedMember]:
        return [self.plug_in(TimedMember(i + 1, identity, member_endpoint(i), clock=self.clock, network_id=network_id))  # type: ignore[misc]
                for i, identity in enumerate(identities)]

    def deliver_all(self) -> None:
        """Everything now due and what it causes; then timers in fake time until nothing is pending or the goal holds."""
        self.network.lost.clear()
        self.settle()
        self.network.lost.clear()

    def converge(self, members: Sequence[TimedMember]) -> None:
        self.deliver_all()
        if any(m.reached_s is None for m in members):
            self.run(CONVERGE_FAKE_S, until=lambda: all(m.reached_s is not None for m in members))
        self.network.lost.clear()


# ------------------------------------------------------------------ memory
_SHARED = (type, ModuleType, FunctionType)


def retained_bytes(root: object, outside: Sequence[object] = ()) -> int:
    """Bytes of everything reachable from root (classes, modules and functions excluded: shared, not per object),
    not entering the objects of outside (what root points to but does not own)."""
    seen = {id(o) for o in outside}
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ part 1: a ladder of sizes
def phase_figures(world: ScaleWorld, members: Sequence[TimedMember], t0: float, controller_cpu_before: float,
                  push_wall_s: float | None = None) -> dict[str, Any]:
    reached = [m.reached_s for m in members if m.reached_s is not None]
    cpu = sorted(m.cpu_s for m in members)
    figures: dict[str, Any] = {
        "members_watched": len(members),
        "reached": len(reached),
        "serial_wall_s": round(max(reached) - t0, 4) if reached else None,
        "controller_cpu_s": round(world.timed.cpu_s - controller_cpu_before, 4),
        "member_cpu_s": {"median": round(cpu[len(cpu) // 2], 6), "max": round(cpu[-1], 6), "sum": round(sum(cpu), 3)} if cpu else None,
        # The serial figure without waiting for a CPU: every member's and the controller's CPU added up.
        "serial_cpu_s": round(world.timed.cpu_s - controller_cpu_before + sum(cpu), 4),
        **world.tally.take(),
    }
    if push_wall_s is not None and cpu:
        figures["push_wall_s"] = round(push_wall_s, 4)
        figures["deployed_s"] = round(push_wall_s + cpu[-1], 4)
    return figures


def storm(world: ScaleWorld, network_id: int, members: list[TimedMember]) -> dict[str, Any]:
    """All members join at once: until each is OK (its first config), and until each lists all (the last config)."""
    count = len(members)
    ok_times: dict[int, float] = {}

    def listing_all(m: TimedMember) -> bool:
        if m.status() == "OK" and m.node_id not in ok_times:
            ok_times[m.node_id] = time.perf_counter()
        return len(m.listed()) == count

    for m in members:
        m.aim(listing_all)
    controller_before = world.timed.cpu_s
    t0 = time.perf_counter()
    for m in members:
        m.join(network_id, world.timed)
    world.converge(members)
    figures = phase_figures(world, members, t0, controller_before)
    figures["all_ok_s"] = round(max(ok_times.values()) - t0, 4) if len(ok_times) == count else None
    figures["ok"] = len(ok_times)
    return figures


def change(world: ScaleWorld, network_id: int, members: list[TimedMember], round_no: int) -> dict[str, Any]:
    directory = world.timed.core.directory
    target = directory.networks[network_id].revision + 1
    for m in members:
        m.aim(lambda m: (c := m.config()) is not None and c.revision >= target)
    before = world.timed.cpu_s
    t0 = time.perf_counter()
    world.timed.update_network(network_id, name=f"scale-{round_no}")
    push_wall_s = time.perf_counter() - t0
    assert directory.networks[network_id].revision == target, "the change did not make one new revision"
    world.converge(members)
    return phase_figures(world, members, t0, before, push_wall_s)


def deauthorize(world: ScaleWorld, network_id: int, members: list[TimedMember]) -> dict[str, Any]:
    victim = members[len(members) // 2]
    others = [m for m in members if m is not victim]
    victim.aim(lambda m: m.status() == "ACCESS_DENIED")
    for m in others:
        m.aim(lambda m: victim.node_id not in m.listed() and victim.node_id not in m.core.peers)
    before = world.timed.cpu_s
    t0 = time.perf_counter()
    world.timed.deauthorize(network_id, victim)
    push_wall_s = time.perf_counter() - t0
    world.converge(others)
    figures = phase_figures(world, others, t0, before, push_wall_s)
    figures["victim_denied_s"] = round(victim.reached_s - t0, 4) if victim.reached_s is not None else None
    return figures


def run_phases(row: dict[str, Any], phases: list[tuple[str, Callable[[], dict[str, Any]]]], phase_timeout_s: float) -> bool:
    """Each phase under its cap, figures into row; False (and row["stopped"] says why) at the first that does not finish."""
    for name, phase in phases:
        cap = Cap()
        ticks, wall, cpu = nsbench.machine_ticks(), time.perf_counter(), time.process_time()
        try:
            with time_cap(phase_timeout_s) as cap:
                row[name] = phase()
            if cap.fired:
                # The alarm's exception is lost when it lands in a gc callback (reported as unraisable) and the
                # phase ran on to its end: past its cap all the same.
                raise PhaseTimeout()
            # On a shared machine the wall figures include waiting for a CPU: these say how much.
            row[name]["phase_wall_s"] = round(time.perf_counter() - wall, 3)
            row[name]["process_cpu_s"] = round(time.process_time() - cpu, 3)
            row[name]["machine_busy_pct"] = round(nsbench.busy_share(ticks, nsbench.machine_ticks()) * 100, 1)
        except Exception:
            if not cap.fired:
                raise
            # The world is left mid-push (or mid-commit): nothing more is measured in it.
            row[name] = {"did_not_finish_s": phase_timeout_s}
            row["stopped"] = f"{name} did not finish in {phase_timeout_s:g} s"
            return False
        if "reached" in row[name] and row[name]["reached"] < row[name]["members_watched"]:
            row["stopped"] = f"{name}: {row[name]['reached']} of {row[name]['members_watched']} members reached"
            return False
        nsbench.log(f"{row['members']} members: {name} {summary_of(row[name])}")
    return True


def run_size(count: int, phase_timeout_s: float, work: Path, try_storm: bool = True,
             profile: Path | None = None) -> dict[str, Any]:
    """One size of part 1, every phase capped.

    Cold: the members, pre-authorized, join at once (storm). If the storm does not finish, the same
    members are made known to a fresh controller through its storage instead (keys, addresses,
    endpoints: as after a controller restart) and come online (reconnect), so that the change and
    deauth phases are still measured at this size. try_storm False: straight to that (the storm did
    not finish at a smaller size). profile: write the change phase's cProfile statistics there.
    """
    row: dict[str, Any] = {"members": count}
    identities = [Identity.generate() for _ in range(count)]
    world = ScaleWorld(work / "cold")
    try:
        network_id = world.timed.create_network("scale", pools=[POOL])
        members = world.add_members(identities, network_id)
        storm_done = try_storm and run_phases(row, [("preauthorize", lambda: preauthorize(world, network_id, members)),
                                                    ("storm", lambda: storm(world, network_id, members))], phase_timeout_s)
        if not storm_done:
            row["storm_stopped"] = row.pop("stopped", "not tried: the storm did not finish at a smaller size")
            world.close()
            world = ScaleWorld(work / "warm")
            network_id = world.timed.create_network("scale", pools=[POOL])
            populate(world.timed, network_id, identities, 0)
            world.restart_controller(greet=False)
            members = world.add_members(identities, network_id)
            if not run_phases(row, [("reconnect", lambda: reconnect(world, network_id, members))], phase_timeout_s):
                return finish(row, world, count)
        run_phases(row, [("change", lambda: profiled(profile, lambda: change(world, network_id, members, 1))),
                         ("deauth", lambda: deauthorize(world, network_id, members))], phase_timeout_s)
        return finish(row, world, count)
    finally:
        world.close()


def profiled(path: Path | None, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path is None:
        return call()
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(call)
    finally:
        profiler.dump_stats(path)


def finish(row: dict[str, Any], world: ScaleWorld, count: int) -> dict[str, Any]:
    """Memory figures once every member is online (after the storm or the reconnect)."""
    online = world.timed.online_members()
    row["controller_online"] = online
    if online == count:
        gc.collect()
        core_bytes = retained_bytes(world.timed.core)
        row["controller_core_bytes"] = core_bytes
        row["controller_bytes_per_member"] = round(core_bytes / count)
    row["process_rss_bytes"] = rss_bytes()
    row["controller_drops"] = world.timed.drops
    return row


def reconnect(world: ScaleWorld, network_id: int, members: list[TimedMember]) -> dict[str, Any]:
    """Members the controller knows (keys, endpoint) come online at once: each gets its config, nobody else a push."""
    count = len(members)
    for m in members:
        m.aim(lambda m: m.status() == "OK" and len(m.listed()) == count)
    before = world.timed.cpu_s
    t0 = time.perf_counter()
    for m in members:
        m.join(network_id, world.timed)
    world.converge(members)
    return phase_figures(world, members, t0, before)


def preauthorize(world: ScaleWorld, network_id: int, members: list[TimedMember]) -> dict[str, Any]:
    """The admin authorizes every member by id before it ever asks (as a provisioning script would): no push yet."""
    before = world.timed.cpu_s
    t0 = time.perf_counter()
    for m in members:
        world.timed.authorize(network_id, m)
    return {"wall_s": round(time.perf_counter() - t0, 4), "controller_cpu_s": round(world.timed.cpu_s - before, 4)}


def summary_of(figures: dict[str, Any]) -> str:
    keys = ("wall_s", "serial_wall_s", "serial_cpu_s", "deployed_s", "controller_cpu_s")
    return ", ".join(f"{k} {figures[k]}" for k in keys if figures.get(k) is not None)


def sizes_up_to(members: int) -> list[int]:
    return [s for s in LADDER if s < members] + [members]


def ladder(args: argparse.Namespace, bytes_per_peer: float | None, started: float, work: Path, stamp: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try_storm = True
    for count in sizes_up_to(args.members):
        if time.monotonic() - started > args.max_seconds:
            rows.append({"members": count, "skipped": f"--max-seconds {args.max_seconds:g} reached"})
            break
        if bytes_per_peer is not None:
            needed = count * count * bytes_per_peer
            budget = available_bytes() * MEMORY_BUDGET_SHARE
            if needed > budget:
                rows.append({"members": count, "skipped": f"{count} members each holding {count} peers need ~{needed / 2**30:.1f} GiB "
                                                          f"at {bytes_per_peer:.0f} B per peer; budget {budget / 2**30:.1f} GiB"})
                break
        nsbench.log(f"part 1: {count} members")
        profile = None
        if args.profile and count == max(sizes_up_to(args.members)):
            profile = nsbench.RESULTS_DIR / f"scale-{stamp}-change-{count}.pstats"
        row = run_size(count, args.phase_timeout, work / f"n{count}", try_storm, profile)
        if profile is not None and profile.exists():
            row["profile"] = str(nsbench.display_path(profile))
        try_storm = try_storm and "storm_stopped" not in row
        rows.append(row)
        gc.collect()
        if "stopped" in row:
            nsbench.log(f"{count} members: {row['stopped']}; no larger size")
            break
    return rows


# ------------------------------------------------------------------ part 2: one full member core in a big network
def populate(controller: Controller, network_id: int, identities: Sequence[Identity], first_endpoint: int) -> None:
    """Authorized members with keys, addresses and endpoints, written straight to storage (known, offline)."""
    storage = controller.storage
    pool = int(ipaddress.IPv4Network(POOL).network_address)
    with storage.transaction():
        for i, identity in enumerate(identities):
            host, port = member_endpoint(first_endpoint + i)
            storage.insert_member(MemberRow(network_id, identity.node_id, identity.public, authorized=True,
                                            ips=(f"{ipaddress.IPv4Address(pool + 10 + i)}/16",), endpoint=f"{host}:{port}"))
        storage.bump_revision(network_id)


def join_one(world: ScaleWorld, network_id: int, number: int) -> TimedMember:
    member: TimedMember = world.plug_in(TimedMember(number, endpoint=member_endpoint(number), clock=world.clock, network_id=network_id))  # type: ignore[assignment]
    world.timed.authorize(network_id, member)
    member.aim(lambda m: m.status() == "OK")
    member.join(network_id, world.timed)
    world.converge([member])
    assert member.reached_s is not None, "the probe member did not get its config"
    return member


def one_full_member(count: int, work: Path) -> dict[str, Any]:
    """Part 2: memory per idle known peer and the cost of one config at `count` members."""
    world = ScaleWorld(work)
    try:
        big = world.timed.create_network("big", pools=[POOL])
        small = world.timed.create_network("small", pools=["10.146.0.0/16"])
        t0 = time.perf_counter()
        populate(world.timed, big, [Identity.generate() for _ in range(count - 2)], 100_000)  # + timing member + probe
        populate(world.timed, small, [Identity.generate()], 100_000 + count)
        world.restart_controller(greet=False)  # the directory is loaded from storage, as at start-up
        populated_s = time.perf_counter() - t0

        # Timing (no tracing): one member joins, then one admin change is pushed to it alone (the others are offline).
        timing = join_one(world, big, 1)
        timing.aim(lambda m: m.config() is not None and m.config().name == "timed")  # type: ignore[union-attr]
        world.tally.take()  # the join's datagrams are not the push's
        before = world.timed.cpu_s
        world.timed.update_network(big, name="timed")
        push_cpu_s = world.timed.cpu_s - before
        world.converge([timing])
        member_apply_s = timing.cpu_s
        push_bytes = world.tally.take()["controller_bytes"]
        world.unplug(timing)
        del timing

        # Memory (traced): what a member joined to the big network retains, against one joined to the small one;
        # what the controller keeps more meanwhile (its client, any cache) is taken off.
        gc.collect()
        tracemalloc.start()
        retained = {}
        graph = {}
        for name, network_id, number in (("small", small, 2), ("big", big, 3)):
            gc.collect()
            controller_before = retained_bytes(world.timed.core)
            base = tracemalloc.get_traced_memory()[0]
            probe = join_one(world, network_id, number)
            world.tally.take()
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] - base
            retained[name] = (traced - (retained_bytes(world.timed.core) - controller_before),
                              len(probe.peer_ids()), len(probe.listed()))
            graph[name] = retained_bytes(probe.core)
        tracemalloc.stop()
        big_bytes, big_peers, big_listed = retained["big"]
        small_bytes, small_peers, _ = retained["small"]
        per_peer = (big_bytes - small_bytes) / max(1, big_peers - small_peers)
        per_peer_graph = (graph["big"] - graph["small"]) / max(1, big_peers - small_peers)
        return {
            "members": count,
            "populate_s": round(populated_s, 3),
            "listed": big_listed,
            "peers_held": big_peers,
            "member_retained_bytes": big_bytes,
            "member_retained_bytes_small_network": small_bytes,
            "bytes_per_idle_peer": round(per_peer, 1),
            "bytes_per_idle_peer_object_graph": round(per_peer_graph, 1),
            "member_apply_cpu_s": round(member_apply_s, 4),
            "controller_commit_push_cpu_s": round(push_cpu_s, 4),
            "controller_push_bytes": push_bytes,
        }
    finally:
        world.close()


# ------------------------------------------------------------------ part 1b: light members at 10,000
class LightNet:
    """Hands datagrams between the controller and light members at once (no loss, no latency), counting them."""

    def __init__(self, controller: TimedController, clock: FakeClock) -> None:
        self.controller = controller
        self.clock = clock
        self.members: dict[tuple[str, int], LightMember] = {}
        self.to_members: list[tuple[bytes, tuple[str, int]]] = []
        self.datagrams = self.bytes = self.controller_datagrams = self.controller_bytes = 0
        controller.core.transmit = self

    def send_datagram(self, data: bytes | memoryview, address: tuple[str, int]) -> None:
        self.to_members.append((bytes(data), address))

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: tuple[str, int]) -> None:
        raise AssertionError("the controller relays nothing here")

    def add(self, member: LightMember) -> LightMember:
        self.members[member.endpoint] = member
        return member

    def pump(self) -> None:
        """Deliver until nothing moves: the controller's datagrams to members, theirs to it."""
        now = self.clock.now
        while True:
            batch, self.to_members = self.to_members, []
            for data, address in batch:
                self.controller_datagrams += 1
                self.controller_bytes += len(data)
                member = self.members.get(address)
                if member is not None:
                    member.receive(data, now)
            sent = False
            for member in self.members.values():
                if member.outbox:
                    outbox, member.outbox = member.outbox, []
                    for data in outbox:
                        self.datagrams += 1
                        self.bytes += len(data)
                        self.controller.receive(data, member.endpoint, now)
                    sent = True
            if not sent and not self.to_members:
                return

    def step(self) -> None:
        """TICK_S of fake time: the controller's timers, members' handshake retries, and what they cause."""
        self.clock.now = round(self.clock.now + TICK_S, 9)
        self.controller.tick(self.clock.now)
        for member in self.members.values():
            member.retry(self.clock.now)
        self.pump()

    def take(self) -> dict[str, int]:
        counts = {"datagrams": self.datagrams + self.controller_datagrams, "bytes": self.bytes + self.controller_bytes,
                  "controller_datagrams": self.controller_datagrams, "controller_bytes": self.controller_bytes}
        self.datagrams = self.bytes = self.controller_datagrams = self.controller_bytes = 0
        return counts


def light_converge(net: LightNet, members: Sequence[LightMember], max_fake_s: float = CONVERGE_FAKE_S) -> None:
    net.pump()
    end = net.clock.now + max_fake_s
    while any(m.reached_s is None for m in members) and net.clock.now < end:
        net.step()


def light_figures(net: LightNet, members: Sequence[LightMember], t0: float, controller_cpu_before: float,
                  push_wall_s: float | None = None) -> dict[str, Any]:
    reached = [m.reached_s for m in members if m.reached_s is not None]
    cpu = sorted(m.cpu_s for m in members)
    controller_cpu = net.controller.cpu_s - controller_cpu_before
    figures: dict[str, Any] = {
        "members_watched": len(members),
        "reached": len(reached),
        "serial_wall_s": round(max(reached) - t0, 4) if reached else None,
        "controller_cpu_s": round(controller_cpu, 4),
        "member_cpu_s": {"median": round(cpu[len(cpu) // 2], 6), "max": round(cpu[-1], 6), "sum": round(sum(cpu), 3)},
        "serial_cpu_s": round(controller_cpu + sum(cpu), 4),
        "fake_s": round(net.clock.now - net.started_fake_s, 2) if hasattr(net, "started_fake_s") else None,
        **net.take(),
    }
    if push_wall_s is not None:
        figures["push_wall_s"] = round(push_wall_s, 4)
        figures["deployed_s"] = round(push_wall_s + cpu[-1], 4)
    return figures


def light_rejoin(net: LightNet, members: Sequence[LightMember]) -> dict[str, Any]:
    """Members holding the current config (cached) all come online at once: handshake, request, answer."""
    for m in members:
        m.aim(lambda m: m.answers > 0 and m.held.status is NetworkStatus.OK)
    before = net.controller.cpu_s
    t0 = time.perf_counter()
    net.started_fake_s = net.clock.now  # type: ignore[attr-defined]
    for m in members:
        m.join(net.clock.now)
    light_converge(net, members, max_fake_s=10 * CONVERGE_FAKE_S)  # the controller takes 1,000 handshakes a second
    return light_figures(net, members, t0, before)


def light_change(net: LightNet, network_id: int, members: Sequence[LightMember]) -> dict[str, Any]:
    directory = net.controller.core.directory
    target = directory.networks[network_id].revision + 1
    for m in members:
        m.aim(lambda m: (m.revision or 0) >= target)
    before = net.controller.cpu_s
    net.started_fake_s = net.clock.now  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    net.controller.update_network(network_id, name="scale-light")
    push_wall_s = time.perf_counter() - t0
    light_converge(net, members)
    return light_figures(net, members, t0, before, push_wall_s)


def light_deauth(net: LightNet, network_id: int, members: Sequence[LightMember]) -> dict[str, Any]:
    victim = members[len(members) // 2]
    others = [m for m in members if m is not victim]
    victim.aim(lambda m: m.held.status is NetworkStatus.ACCESS_DENIED)
    for m in others:
        m.aim(lambda m: m.held.config is not None and not m.lists(victim.node_id))
    before = net.controller.cpu_s
    net.started_fake_s = net.clock.now  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    net.controller.deauthorize(network_id, victim)  # type: ignore[arg-type]  # the harness needs its node_id only
    push_wall_s = time.perf_counter() - t0
    light_converge(net, others)
    figures = light_figures(net, others, t0, before, push_wall_s)
    figures["victim_denied_s"] = round(victim.reached_s - t0, 4) if victim.reached_s is not None else None
    return figures


def light_run(count: int, phase_timeout_s: float, work: Path) -> dict[str, Any]:
    """Part 1b: `count` light members (scale_light.py) against one controller: rejoin storm, change, deauth, memory."""
    row: dict[str, Any] = {"members": count, "mode": "light (scale_light.py: real sessions and Membership, shared start config)"}
    work.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    controller = TimedController(database(work / "controller.db"), clock)
    try:
        network_id = controller.create_network("scale", pools=[POOL])
        identities = [Identity.generate() for _ in range(count)]
        t0 = time.perf_counter()
        populate(controller, network_id, identities, 0)
        controller.restart()  # the directory loaded from storage, as at start-up
        row["populate_s"] = round(time.perf_counter() - t0, 3)
        net = LightNet(controller, clock)
        scratch = AeadScratch()

        def light(index: int, shared: DeltaBase | None) -> LightMember:
            return net.add(LightMember(identities[index], member_endpoint(index), network_id, controller.identity.public,
                                       CONTROLLER_ENDPOINT, clock.wall, scratch, shared))

        # One member fetches the whole config and verifies it for real; the others start from that object.
        first = light(0, None)
        first.aim(lambda m: m.held.config is not None)
        first.join(clock.now)
        light_converge(net, [first])
        if first.held.config is None:
            row["stopped"] = "the first member did not get its config"
            return row
        shared = DeltaBase.of(first.held.config)
        first.membership._delta_bases[network_id] = shared
        row["first_member"] = {"full_config_cpu_s": round(first.cpu_s, 4), "listed": len(shared.ids), **net.take()}
        gc.collect()
        rss_before = rss_bytes()
        members = [first] + [light(i, shared) for i in range(1, count)]
        row["rss_per_light_member_idle_bytes"] = round((rss_bytes() - rss_before) / max(1, count - 1))
        # Ten thousand members' objects make every full collection long: a member that happens to
        # trigger one would be charged it (a member process has a small heap). Set aside, not collected.
        gc.collect()
        gc.freeze()
        phases = [("rejoin", lambda: light_rejoin(net, members[1:])),
                  ("change", lambda: light_change(net, network_id, members)),
                  ("deauth", lambda: light_deauth(net, network_id, members))]
        if run_phases(row, phases, phase_timeout_s):
            row["rss_per_light_member_after_bytes"] = round((rss_bytes() - rss_before) / max(1, count - 1))
        gc.unfreeze()
        gc.collect()
        row["controller_online"] = controller.online_members()
        controller.core.transmit = RecordingTransmit()  # not the network and its members
        core_bytes = retained_bytes(controller.core)
        row["controller_core_bytes"] = core_bytes
        row["controller_bytes_per_member"] = round(core_bytes / count)
        row["process_rss_bytes"] = rss_bytes()
        row["controller_drops"] = controller.drops
        row["member_drops"] = dict(sum((m.drops for m in members), Counter()))
        return row
    finally:
        controller.close()


def authorize_by_id(controller: Controller, network_id: int, identities: Sequence[Identity]) -> None:
    """Members authorized by id before they ever asked (no keys, no endpoint), written straight to storage."""
    with controller.storage.transaction():
        for identity in identities:
            controller.storage.insert_member(MemberRow(network_id, identity.node_id, None, authorized=True))
        controller.storage.bump_revision(network_id)


def light_storm(count: int, phase_timeout_s: float, work: Path) -> dict[str, Any]:
    """Part 1b's cold join storm: `count` light members, authorized by id, join at once; whole configs counted, not parsed.

    Until every member has its first answer and the controller has no push held back: what the controller does
    (sessions, requests, one commit per join, coalesced pushes) is all real; the members only open what it sends.
    """
    row: dict[str, Any] = {"members": count}
    work.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    controller = TimedController(database(work / "controller.db"), clock)
    try:
        network_id = controller.create_network("storm", pools=[POOL])
        identities = [Identity.generate() for _ in range(count)]
        authorize_by_id(controller, network_id, identities)
        controller.restart()
        net = LightNet(controller, clock)
        scratch = AeadScratch()
        members = [net.add(LightMember(identity, member_endpoint(i), network_id, controller.identity.public, CONTROLLER_ENDPOINT,
                                       clock.wall, scratch, parse_whole=False)) for i, identity in enumerate(identities)]

        def storm() -> dict[str, Any]:
            for m in members:
                m.aim(lambda m: m.held.status is NetworkStatus.OK)
            before = controller.cpu_s
            net.started_fake_s = clock.now  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            for m in members:
                m.join(clock.now)
            light_converge(net, members, max_fake_s=10 * CONVERGE_FAKE_S)
            while controller.core._pushes_due and clock.now - net.started_fake_s < 10 * CONVERGE_FAKE_S:  # type: ignore[attr-defined]
                net.step()  # the last window's push
            figures = light_figures(net, members, t0, before)
            figures["all_pushed_wall_s"] = round(time.perf_counter() - t0, 4)
            figures["whole_configs"] = sum(m.whole_configs for m in members)
            figures["revision"] = controller.core.directory.networks[network_id].revision
            figures["controller_sent"] = controller.sent
            # Each member on its own machine: the controller's work is the serial part.
            figures["deployed_s"] = round(figures["controller_cpu_s"] + figures["member_cpu_s"]["max"], 4)
            return figures

        run_phases(row, [("storm", storm)], phase_timeout_s)
        row["controller_drops"] = controller.drops
        return row
    finally:
        controller.close()


# ------------------------------------------------------------------ part 3: two instances on one PostgreSQL
INSTANCE_A = CONTROLLER_ENDPOINT
INSTANCE_B = ("198.18.0.254", 9994)
FAILOVER_FAKE_CAP_S = 30.0


class InstanceController(TimedController):
    """One of two instances (one identity, one database): its commits are announced to the other, as
    PostgreSQL's NOTIFY does (pg_listen); the other reloads on its next input or tick."""

    peer: "InstanceController | None" = None

    def _open(self) -> None:
        Controller._open(self)
        self.core.instance_endpoints = [self.endpoint]

    def _write_back(self) -> list[Committed]:
        changes = Controller._write_back(self)
        committed = any(change.push or change.answer is not None for change in changes)
        if committed and self.peer is not None:
            self.peer.core.external_change(None)
        return changes

    def _admin(self, change: Any) -> Any:
        answer = TimedController._admin(self, change)
        if self.peer is not None:
            self.peer.core.external_change(None)
        return answer


class PairWorld(ScaleWorld):
    """A ScaleWorld with two controller instances on one PostgreSQL schema; members split between them."""

    def __init__(self, work: Path, url: str) -> None:
        World.__init__(self)
        work.mkdir(parents=True, exist_ok=True)
        self.tally = Tally()
        self.network.log = self.tally
        identity = Identity.generate()
        self.a = InstanceController(url, self.clock, identity=identity, endpoint=INSTANCE_A)
        self.b = InstanceController(url, self.clock, identity=identity, endpoint=INSTANCE_B)
        self.a.peer, self.b.peer = self.b, self.a
        self.controller = self.timed = self.a
        self.network.attach(self.a)
        self.network.attach(self.b)

    def parties(self) -> list[Any]:
        return [self.a, self.b, *self.members]

    def close(self) -> None:
        self.a.close()
        self.b.close()


def split_cpu(figures: dict[str, Any], world: PairWorld, before: dict[str, float]) -> None:
    """Each instance's CPU for the phase, and the serial CPU with both."""
    a, b = world.a.cpu_s - before["a"], world.b.cpu_s - before["b"]
    figures["controller_cpu_s"] = {"a": round(a, 4), "b": round(b, 4)}
    if figures.get("member_cpu_s"):
        figures["serial_cpu_s"] = round(a + b + figures["member_cpu_s"]["sum"], 4)


def two_instance_run(count: int, url: str, work: Path, phase_timeout_s: float, one_url: str | None = None) -> dict[str, Any]:
    """Part 3 on one schema: storm split over A and B, a change through B reaching A's members, A stopping.

    one_url: another schema, where the same storm runs against A alone (B never starts), for comparison.
    """
    row: dict[str, Any] = {"members": count, "storage": "PostgreSQL (tests/pg_server.py), one schema"}
    if one_url is not None:
        world = PairWorld(work / "one", one_url)
        try:
            world.down.add(world.b)
            network_id = world.a.create_network("one", pools=[POOL])
            world.run(2 * HEARTBEAT_S)
            members = world.add_members([Identity.generate() for _ in range(count)], network_id)
            for m in members:
                world.a.authorize(network_id, m)

            def one_storm() -> dict[str, Any]:
                for m in members:
                    m.aim(lambda m: len(m.listed()) == count)
                before, t0 = world.a.cpu_s, time.perf_counter()
                for m in members:
                    m.join(network_id, INSTANCE_A)
                world.converge(members)
                return phase_figures(world, members, t0, before)

            run_phases(row, [("storm_one_instance", one_storm)], phase_timeout_s)
        finally:
            world.close()
    world = PairWorld(work / "two", url)
    try:
        network_id = world.a.create_network("pair", pools=[POOL])
        world.b.core.external_change(None)
        world.run(2 * HEARTBEAT_S)  # both heartbeat and read each other: configs list both instances
        identities = [Identity.generate() for _ in range(count)]
        members = world.add_members(identities, network_id)
        on_a, on_b = members[: count // 2], members[count // 2:]
        for m in members:
            world.a.authorize(network_id, m)
        world.run(1.0)  # B reloads what A committed

        def pair_storm() -> dict[str, Any]:
            for m in members:
                m.aim(lambda m: len(m.listed()) == count)
            cpu = {"a": world.a.cpu_s, "b": world.b.cpu_s}
            t0, fake0 = time.perf_counter(), world.now
            for m in on_a:
                m.join(network_id, INSTANCE_A)
            for m in on_b:
                m.join(network_id, INSTANCE_B)
            world.converge(members)
            figures = phase_figures(world, members, t0, cpu["a"])
            split_cpu(figures, world, cpu)
            figures["fake_s"] = round(world.now - fake0, 2)
            return figures

        def across() -> dict[str, Any]:
            """An admin change committed through B until A's members applied it (A hears through the notification)."""
            target = world.b.core.directory.networks[network_id].revision + 1
            for m in on_a:
                m.aim(lambda m: (c := m.config()) is not None and c.revision >= target)
            cpu = {"a": world.a.cpu_s, "b": world.b.cpu_s}
            t0, fake0 = time.perf_counter(), world.now
            world.b.update_network(network_id, name="changed-on-b")
            world.converge(on_a)
            figures = phase_figures(world, on_a, t0, cpu["a"])
            split_cpu(figures, world, cpu)
            figures["fake_s"] = round(world.now - fake0, 3)  # A's reload waits for its next tick (TICK_S)
            return figures

        def failover() -> dict[str, Any]:
            """A change committed (acknowledged) through A, which stops before pushing it: until A's members are served
            by B, holding that change."""
            committed = admin.update_network(world.a.storage, network_id, {"name": "last-on-a"})
            assert isinstance(committed.answer, Network)
            target = committed.answer.revision
            world.down.add(world.a)  # SIGKILL: its datagrams dropped, its timers stopped, its push never made
            world.b.core.external_change(None)  # PostgreSQL's NOTIFY, sent at the commit
            fake0, t0 = world.now, time.perf_counter()
            for m in on_a:
                m.aim(None)

            def served(m: TimedMember) -> bool:
                config = m.config()
                return (m.core.membership.controller_endpoint(network_id) == INSTANCE_B
                        and world.b.core.clients.online(m.node_id, world.now) is not None
                        and config is not None and config.revision >= target and config.name == "last-on-a")

            moved: dict[int, float] = {}

            def all_served() -> bool:
                for m in on_a:
                    if m.node_id not in moved and served(m):
                        moved[m.node_id] = world.now - fake0
                return len(moved) == len(on_a)

            try:
                world.run(FAILOVER_FAKE_CAP_S, until=all_served)
            except AssertionError:
                pass
            times = sorted(moved.values())
            return {
                "members_watched": len(on_a), "reached": len(moved),
                "failover_fake_s": {"median": round(times[len(times) // 2], 2), "max": round(times[-1], 2)} if times else None,
                # Every member, A's (moved to B) and B's, ends holding the change A acknowledged and never pushed.
                "lost_change": any((c := m.config()) is None or c.revision < target or c.name != "last-on-a" for m in members),
                "serial_wall_s": round(time.perf_counter() - t0, 3),
                "b_online": world.b.online_members(),
                **world.tally.take(),
            }

        run_phases(row, [("storm", pair_storm), ("across", across), ("failover", failover)], phase_timeout_s)
        row["controller_drops"] = {"a": world.a.drops, "b": world.b.drops}
        return row
    finally:
        world.close()


def two_instances(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Part 3: two controller instances sharing one PostgreSQL (a private server, tests/pg_server.py)."""
    if args.pair_members == 0:
        return {"skipped": "--pair-members 0"}
    try:
        from tests.pg_server import PgServer, PgUnavailable
    except ImportError as exc:  # psycopg missing
        reason = f"not measured: {exc}"
        nsbench.log(f"part 3: {reason}")
        return {"skipped": reason}
    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        reason = f"not measured: {exc}"
        nsbench.log(f"part 3: {reason}")
        return {"skipped": reason}
    try:
        nsbench.log(f"part 3: {args.pair_members} full members, two instances on one PostgreSQL")
        return two_instance_run(args.pair_members, server.create_schema(), work / "pair", args.phase_timeout, server.create_schema())
    finally:
        server.stop()


# ------------------------------------------------------------------ output
def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{value}{unit}"


def phase_cell(row: dict[str, Any], phase: str, key: str) -> str:
    figures = row.get(phase)
    if figures is None:
        return "-"
    if "did_not_finish_s" in figures:
        return f"DNF > {figures['did_not_finish_s']:g} s"
    return fmt(figures.get(key))


def print_tables(rows: list[dict[str, Any]], full: dict[str, Any] | None, light: dict[str, Any] | None,
                 pair: dict[str, Any]) -> None:
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    table = Table(title="part 1: every member a NodeCore, seconds (serial = all cores on one CPU, wall; Σ CPU = the same without "
                        "waiting for a CPU; deployed = push + slowest member)",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("members", "preauth", "storm all OK", "storm all listed", "storm ctl CPU", "reconnect", "change serial",
                   "change Σ CPU", "change deployed", "change ctl CPU", "deauth serial", "deauth deployed", "ctl B/member", "RSS MiB"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        if "skipped" in row:
            table.add_row(str(row["members"]), row["skipped"], *[""] * 12)
            continue
        table.add_row(
            str(row["members"]), phase_cell(row, "preauthorize", "wall_s"), phase_cell(row, "storm", "all_ok_s"),
            phase_cell(row, "storm", "serial_wall_s"), phase_cell(row, "storm", "controller_cpu_s"),
            phase_cell(row, "reconnect", "serial_wall_s"), phase_cell(row, "change", "serial_wall_s"),
            phase_cell(row, "change", "serial_cpu_s"), phase_cell(row, "change", "deployed_s"),
            phase_cell(row, "change", "controller_cpu_s"), phase_cell(row, "deauth", "serial_wall_s"),
            phase_cell(row, "deauth", "deployed_s"), fmt(row.get("controller_bytes_per_member")),
            fmt(round(row.get("process_rss_bytes", 0) / 2**20)),
        )
    console.print(table)
    if full is not None:
        table = Table(title=f"part 2: one full member core in a {full['members']}-member network", header_style="bold",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("target", justify="right")
        table.add_row("member bytes per idle known peer (tracemalloc)", fmt(full["bytes_per_idle_peer"]),
                      f"< {TARGET_PEER_BYTES}")
        table.add_row("member CPU to verify and apply the config, s", fmt(full["member_apply_cpu_s"]), "")
        table.add_row("controller CPU for one commit + push to one member, s", fmt(full["controller_commit_push_cpu_s"]), "")
        table.add_row("bytes the controller sent for that push", fmt(full["controller_push_bytes"]), "")
        console.print(table)
    if light:
        if "members" in light:
            console.print(light_table(light))
        cold = light.get("cold_storm")
        if cold is not None:
            keys = (("reached", "reached"), ("serial_wall_s", "all answered s"), ("all_pushed_wall_s", "all pushed s"),
                    ("controller_cpu_s", "ctl CPU s"), ("deployed_s", "deployed s"), ("whole_configs", "whole configs"),
                    ("controller_bytes", "ctl bytes"), ("fake_s", "fake s"))
            console.print(phase_table(f"part 1b: cold join storm, {cold['members']} light members (whole configs counted, "
                                      "not parsed)", cold, ("storm",), keys))
    if "skipped" in pair:
        console.print(f"part 3 (two instances on PostgreSQL): {pair['skipped']}", markup=False)
    else:
        console.print(pair_table(pair))


def phase_table(title: str, row: dict[str, Any], phases: Sequence[str], keys: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("phase")
    for _, label in keys:
        table.add_column(label, justify="right", no_wrap=True)
    for phase in phases:
        figures = row.get(phase)
        if figures is None:
            continue
        if "did_not_finish_s" in figures:
            table.add_row(phase, f"DNF > {figures['did_not_finish_s']:g} s", *[""] * (len(keys) - 1))
            continue
        cells = []
        for key, _ in keys:
            value = figures.get(key)
            if isinstance(value, dict):
                value = " / ".join(f"{k} {fmt(v)}" for k, v in value.items())
            cells.append(value if isinstance(value, str) else fmt(value))
        table.add_row(phase, *cells)
    return table


def light_table(light: dict[str, Any]) -> Table:
    keys = (("reached", "reached"), ("serial_wall_s", "serial s"), ("serial_cpu_s", "Σ CPU s"), ("controller_cpu_s", "ctl CPU s"),
            ("push_wall_s", "push s"), ("deployed_s", "deployed s"), ("fake_s", "fake s"), ("controller_bytes", "ctl bytes"))
    return phase_table(f"part 1b: {light['members']} light members (real sessions and Membership, one shared start config); "
                       f"controller {fmt(light.get('controller_bytes_per_member'))} B/member, RSS per light member "
                       f"{fmt(light.get('rss_per_light_member_idle_bytes'))} B idle, "
                       f"{fmt(light.get('rss_per_light_member_after_bytes'))} B with its own member tuple",
                       light, ("rejoin", "change", "deauth"), keys)


def pair_table(pair: dict[str, Any]) -> Table:
    keys = (("reached", "reached"), ("serial_wall_s", "serial s"), ("controller_cpu_s", "ctl CPU s (A / B)"),
            ("fake_s", "fake s"), ("failover_fake_s", "failover fake s"), ("lost_change", "lost change"))
    return phase_table(f"part 3: {pair['members']} full members split over two instances on one PostgreSQL", pair,
                       ("storm_one_instance", "storm", "across", "failover"), keys)


def count_or_zero(text: str) -> int:
    """A member count for an optional part: 0 leaves it out."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (leave the part out) or more")
    return count


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="scale.py", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=nsbench.positive_int, default=DEFAULT_MEMBERS, metavar="N",
                        help=f"largest size (default {DEFAULT_MEMBERS}); part 1 climbs {', '.join(map(str, LADDER))} up to it, "
                             "part 2 uses it; --members 500 is the quick mode")
    parser.add_argument("--phase-timeout", type=nsbench.positive_float, default=DEFAULT_PHASE_TIMEOUT_S, metavar="S",
                        help=f"cap on each phase of part 1 (default {DEFAULT_PHASE_TIMEOUT_S:g})")
    parser.add_argument("--max-seconds", type=nsbench.positive_float, default=DEFAULT_MAX_SECONDS, metavar="S",
                        help=f"part 1 starts no new size after S seconds (default {DEFAULT_MAX_SECONDS:g})")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the change phase at the largest size; statistics next to the result (pstats)")
    parser.add_argument("--skip-full-member", action="store_true", help="leave out part 2 (it runs first, ~1 min at 10,000)")
    parser.add_argument("--light", type=count_or_zero, default=DEFAULT_LIGHT_MEMBERS, metavar="N",
                        help=f"part 1b: N light members (real sessions and Membership; default {DEFAULT_LIGHT_MEMBERS}, 0: skip)")
    parser.add_argument("--light-storm", type=count_or_zero, default=DEFAULT_LIGHT_STORM_MEMBERS, metavar="N",
                        help=f"part 1b: a cold join storm of N light members (default {DEFAULT_LIGHT_STORM_MEMBERS}, 0: skip)")
    parser.add_argument("--pair-members", type=count_or_zero, default=DEFAULT_PAIR_MEMBERS, metavar="N",
                        help=f"part 3: N full members split over two instances on PostgreSQL (default {DEFAULT_PAIR_MEMBERS}, 0: skip)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    machine = nsbench.machine_info({}, code=control.code_info())
    nsbench.log(f"load average {machine['loadavg']}, cpus {machine['nproc']}")
    with tempfile.TemporaryDirectory(prefix="l2mesh-scale-") as tmp:
        work = Path(tmp)
        full = None
        if not args.skip_full_member:
            nsbench.log(f"part 2: one full member core in a {args.members}-member network")
            (work / "full").mkdir()
            full = one_full_member(args.members, work / "full")
        rows = ladder(args, full["bytes_per_idle_peer"] if full else None, started, work, stamp)
        light = None
        if args.light:
            nsbench.log(f"part 1b: {args.light} light members")
            light = light_run(args.light, args.phase_timeout, work / "light")
            gc.collect()
        if args.light_storm:
            nsbench.log(f"part 1b: a cold join storm of {args.light_storm} light members")
            light_cold = light_storm(args.light_storm, args.phase_timeout, work / "light-storm")
            if light is None:
                light = {}
            light["cold_storm"] = light_cold
            gc.collect()
        pair = two_instances(args, work)
    print_tables(rows, full, light, pair)
    head = {
        "options": {"members": args.members, "phase_timeout_s": args.phase_timeout, "max_seconds": args.max_seconds,
                    "light": args.light, "light_storm": args.light_storm, "pair_members": args.pair_members},
        "method": __doc__,
        "targets": {"change_to_all_s": TARGET_CHANGE_S, "bytes_per_idle_peer": TARGET_PEER_BYTES, "failover_s": TARGET_FAILOVER_S},
    }
    out = nsbench.RESULTS_DIR / f"scale-{stamp}.json"
    nsbench.write_results(out, "scale", stamp, head, machine,
                          {"sizes": rows, "full_member": full, "light": light, "two_instances": pair,
                           "elapsed_s": round(time.monotonic() - started, 1)})
    print(f"written {nsbench.display_path(out)} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
