"""The soak's churn: what happens to the network, chosen by a seeded RNG, one step at a time, with traffic throughout.

Each step undoes what has come due (a member that left joins again, a
deauthorized one is authorized again, a blocked path opens, a multicast
listener leaves its group), then sends traffic (a ping between a random
pair; multicast to the groups joined; now and then a bounded UDP stream),
then starts one new event (when there is something to do it to):

| event             | what                                                                  |
|-------------------|-----------------------------------------------------------------------|
| leave_rejoin      | `leave` on a member's control socket, `join` again 3-15 s later       |
| deauth_reauth     | `l2mesh-ctl member deauthorize`, `authorize` again 3-15 s later       |
| restart_sigterm   | the member's daemon stopped by SIGTERM (by PID) and started again     |
| restart_sigkill   | the same with SIGKILL: no goodbye, a stale control socket             |
| controller_restart| the controller stopped (SIGTERM or SIGKILL), down 1-5 s, started again;  |
|                   | only until controller_restarts_until_s (soak.py: the first half of the run) |
| path_flap         | UDP between two members' underlay addresses dropped in the router 5-20 s |
| multicast_join    | a member joins a group on its TAP (an IGMP report), leaves 10-60 s later |

Membership events and restarts only touch the churned members (not the
long-lived ones), and only one that nothing is pending on; path flaps,
multicast and traffic touch every member. Counts of events (traffic's
multicast bursts and UDP streams among them), of failed steps (with their
reasons) and of pings are kept for the result file.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from l2mesh.lab import Proc
from soak_net import Member, SoakNetwork, SoakStepError

UNDO_AFTER_S = (3.0, 15.0)
FLAP_S = (5.0, 20.0)
MULTICAST_HOLD_S = (10.0, 60.0)
CONTROLLER_DOWN_S = (1.0, 5.0)
UDP_STREAM_S = 10
UDP_STREAM_RATE = "2M"
MULTICAST_GROUPS = ("239.147.50.1", "239.147.50.2", "239.147.50.3")
MULTICAST_BURST = 10
SETTLED_AFTER_S = 15.0  # a member touched by an event this long ago is expected to be back
SETTLED_FAILURES_KEPT = 50
EVENT_WEIGHTS = {
    "leave_rejoin": 3.0,
    "deauth_reauth": 3.0,
    "restart_sigterm": 2.0,
    "restart_sigkill": 2.0,
    "controller_restart": 0.5,
    "path_flap": 2.0,
    "multicast_join": 3.0,
}


@dataclass
class Pending:
    due_s: float
    what: str
    undo: Callable[[], None]
    member: str | None = None  # busy until undone


@dataclass
class Traffic:
    pings: int = 0
    pings_ok: int = 0
    # Between two settled members (nothing pending on either, neither touched for SETTLED_AFTER_S, no flap on
    # the pair): these should all answer; a failure is kept with its time for the logs.
    settled_pings: int = 0
    settled_pings_ok: int = 0
    settled_failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class Churn:
    network: SoakNetwork
    rng: random.Random
    events: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    traffic: Traffic = field(default_factory=Traffic)
    pending: list[Pending] = field(default_factory=list)
    flapped: tuple[str, str] | None = None
    listeners: dict[Proc, str] = field(default_factory=dict)  # listener -> group
    udp_stream: Proc | None = None
    iperf_servers: dict[str, Proc] = field(default_factory=dict)  # long-lived member name -> iperf3 -s
    touched_s: dict[str, float] = field(default_factory=dict)  # member name -> when an event or undo last touched it
    started_s: float = field(default_factory=time.monotonic)
    # The controller is restarted only until then: its last lifetime must be long enough for the trend test.
    controller_restarts_until_s: float = float("inf")

    # -- the loop's step ------------------------------------------------------------------------------
    def step(self, now_s: float) -> None:
        self.undo_due(now_s)
        self.send_traffic()
        name = self.rng.choices(list(EVENT_WEIGHTS), weights=list(EVENT_WEIGHTS.values()))[0]
        self.attempt(name, lambda: getattr(self, name)(now_s))

    def attempt(self, what: str, action: Callable[[], bool | None]) -> None:
        """Run one event or undo; count it when it happened, count its failure by reason when it did not."""
        try:
            if action() is not False:
                self.events[what] += 1
        except SoakStepError as exc:
            self.failures[f"{what}: {exc}"] += 1

    def undo_due(self, now_s: float) -> None:
        for item in [p for p in self.pending if p.due_s <= now_s]:
            self.pending.remove(item)
            self.attempt(f"undo {item.what}", lambda: item.undo())
            if item.member is not None:
                self.touched_s[item.member] = time.monotonic()

    def settled(self, now_s: float) -> list[Member]:
        """Members nothing is pending on and no event touched for SETTLED_AFTER_S."""
        busy = {p.member for p in self.pending}
        return [m for m in self.network.members
                if m.name not in busy and now_s - self.touched_s.get(m.name, -SETTLED_AFTER_S) >= SETTLED_AFTER_S]

    def settle(self) -> None:
        """Undo everything pending now, stop the traffic generators: the network as built, for the final check."""
        self.undo_due(float("inf"))
        for proc in list(self.listeners):
            self.network.stop(proc)
        self.listeners.clear()
        for proc in [*([self.udp_stream] if self.udp_stream else []), *self.iperf_servers.values()]:
            self.network.stop(proc)
        self.udp_stream = None
        self.iperf_servers.clear()

    # -- choosing ---------------------------------------------------------------------------------------
    def idle_churned_member(self) -> Member | None:
        """A churned member nothing is pending on, marked touched now (the caller is about to act on it)."""
        busy = {p.member for p in self.pending}
        choices = [m for m in self.network.members if not m.long_lived and m.name not in busy]
        if not choices:
            return None
        member = self.rng.choice(choices)
        self.touched_s[member.name] = time.monotonic()
        return member

    def later(self, now_s: float, span_s: tuple[float, float], what: str, undo: Callable[[], None],
              member: Member | None = None) -> None:
        self.pending.append(Pending(now_s + self.rng.uniform(*span_s), what, undo, member.name if member else None))

    # -- events (False: nothing to do it to, not counted) -----------------------------------------------------
    def leave_rejoin(self, now_s: float) -> bool:
        member = self.idle_churned_member()
        if member is None:
            return False
        self.network.leave(member)
        self.later(now_s, UNDO_AFTER_S, "rejoin", lambda: self.network.join(member), member)
        return True

    def deauth_reauth(self, now_s: float) -> bool:
        member = self.idle_churned_member()
        if member is None:
            return False
        self.network.deauthorize(member)
        self.later(now_s, UNDO_AFTER_S, "reauthorize", lambda: self.network.authorize(member), member)
        return True

    def restart_sigterm(self, now_s: float) -> bool:
        return self._restart(signal.SIGTERM)

    def restart_sigkill(self, now_s: float) -> bool:
        return self._restart(signal.SIGKILL)

    def _restart(self, sig: int) -> bool:
        member = self.idle_churned_member()
        if member is None:
            return False
        self.network.restart_daemon(member, sig)
        self.touched_s[member.name] = time.monotonic()  # settling counts from the new daemon's start
        return True

    def controller_restart(self, now_s: float) -> bool:
        if now_s > self.controller_restarts_until_s:
            return False
        sig = self.rng.choice((signal.SIGTERM, signal.SIGKILL))
        self.network.restart_controller(sig, self.rng.uniform(*CONTROLLER_DOWN_S))
        return True

    def path_flap(self, now_s: float) -> bool:
        if self.flapped is not None:
            return False
        a, b = self.rng.sample(self.network.members, 2)
        self.network.block_path(a, b)
        self.flapped = (a.name, b.name)

        def unblock() -> None:
            self.flapped = None
            self.network.unblock_paths()

        self.later(now_s, FLAP_S, "unblock path", unblock)
        return True

    def multicast_join(self, now_s: float) -> bool:
        busy = {p.member for p in self.pending}
        member = self.rng.choice([m for m in self.network.members if m.name not in busy])
        group = self.rng.choice(MULTICAST_GROUPS)
        listener = self.network.start_listener(member, group)
        self.listeners[listener] = group

        def leave() -> None:
            self.listeners.pop(listener, None)
            self.network.stop(listener)

        self.later(now_s, MULTICAST_HOLD_S, "multicast leave", leave)  # the member stays free for other events
        return True

    # -- traffic --------------------------------------------------------------------------------------------
    def send_traffic(self) -> None:
        now_s = time.monotonic()
        settled = self.settled(now_s)
        a, b = self.rng.sample(self.network.members, 2)
        try:
            ok = self.network.ping(a, b)
        except SoakStepError as exc:
            self.failures[f"ping: {exc}"] += 1
            ok = False
        self.traffic.pings += 1
        self.traffic.pings_ok += ok
        if a in settled and b in settled and self.flapped not in ((a.name, b.name), (b.name, a.name)):
            self.traffic.settled_pings += 1
            self.traffic.settled_pings_ok += ok
            if not ok and len(self.traffic.settled_failures) < SETTLED_FAILURES_KEPT:
                self.traffic.settled_failures.append(f"{a.name}->{b.name} at {now_s - self.started_s:.0f} s")
        if self.listeners and settled:
            sender = self.rng.choice(settled)
            self.attempt("multicast_burst", lambda: self.network.send_multicast(
                sender, self.rng.choice(list(self.listeners.values())), MULTICAST_BURST))
        self.attempt("udp_stream", self._udp_stream)

    def _udp_stream(self) -> bool:
        """At most one bounded iperf3 UDP stream at a time, to a long-lived member (whose iperf3 server never restarts)."""
        if self.udp_stream is not None:
            if self.udp_stream.poll() is None:
                return False
            self.network.stop(self.udp_stream)  # reaped and forgotten by the lab
            self.udp_stream = None
        long_lived = [m for m in self.network.members if m.long_lived]
        if not long_lived:
            return False
        target = self.rng.choice(long_lived)
        source = self.rng.choice([m for m in self.network.members if m is not target])
        if target.name not in self.iperf_servers:
            self.iperf_servers[target.name] = self.network.start_in(target, ["iperf3", "-s"], f"{target.name}-iperf3")
            time.sleep(0.5)
        self.udp_stream = self.network.start_in(
            source, ["iperf3", "-c", target.overlay_ip, "-u", "-b", UDP_STREAM_RATE, "-t", str(UDP_STREAM_S)], "udp-stream")
        return True
