"""The port-mapping client, sans-IO: asks the home router to forward a UDP port to us, and keeps it.

The edge (l2mesh/edge/node/portmap.py) sends what poll() returns to the
default gateway's port 5351 and hands back what comes from there; this
class only takes bytes and the time, and speaks through a protocol
(natpmp.py, pcp.py) tried in order: one the router does not speak (it says
so, or does not answer) gives way to the next at once, and a router that
speaks none is asked again only after UNAVAILABLE_RETRY_S.

Steps: a PROBE (the router is there; NAT-PMP's also gives the external
address), then a MAP of our UDP port (suggesting the same port outside),
renewed at half its granted lifetime. Every CHECK_INTERVAL_S the PROBE is
sent again: an epoch (the router's seconds since its mapping state began)
that went back, or a new external address, means the router restarted or
moved, and the port is mapped again at once. At most one request is in
flight; it is resent after 250 ms, doubling, and given up after
MAX_ATTEMPTS (RFC 6886's nine tries would take 64 s, PCP's first retry
alone 3 s: a router that has not answered in 4 s is not there, and start-up
must not wait on it). Whatever comes back that does not answer the request
in flight, or does not parse, is dropped and counted.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from l2mesh.netconf import usable_endpoint
from l2mesh.portmap.protocol import Answer, MappingProtocol, Outcome, Step
from l2mesh.wire.common import Endpoint

REQUESTED_LIFETIME_S = 7200  # RFC 6886 section 3.3's recommendation
FIRST_RETRY_S = 0.25  # RFC 6886 section 3.1: resend after 250 ms, doubling
MAX_ATTEMPTS = 4  # sends of one request: given up 3.75 s after the first
CHECK_INTERVAL_S = 60.0  # while mapped: PROBE again (notices restarts and new addresses)
UNAVAILABLE_RETRY_S = 300.0  # no answer, or no protocol the router speaks: start over this much later
REFUSED_RETRY_S = 300.0  # the router said no (not authorized, out of resources)
NO_EXTERNAL_ADDRESS_RETRY_S = 30.0  # the router has no external address yet (no upstream lease)
RENEWAL_RETRY_S = 30.0  # a renewal went unanswered: the mapping holds until it expires, try again sooner
MIN_RENEWAL_S = 1.0  # a router granting seconds-long lifetimes gets at most one renewal a second
EPOCH_SLACK_S = 2.0  # RFC 6886 section 3.6: an epoch this far behind the expected one is a restart
EPOCH_CLOCK_RATIO = 7 / 8  # ...of the time elapsed here, in case the router's clock runs slow


class MappingState(enum.Enum):
    STARTING = "starting"  # asking, nothing known yet
    MAPPED = "mapped"
    UNAVAILABLE = "unavailable"  # no answer, or no protocol the router speaks
    REFUSED = "refused"  # the router answered with an error
    CLOSED = "closed"


@dataclass(frozen=True)
class Mapping:
    external_port: int
    lifetime_s: int  # as granted
    expires_s: float  # on our clock


@dataclass
class _Request:
    step: Step
    payload: bytes
    attempts: int = 0
    next_send_s: float = 0.0


class MappingClient:
    """One UDP mapping of internal_port on one gateway (a new gateway gets a new client)."""

    def __init__(self, internal_port: int, protocols: Sequence[MappingProtocol],
                 lifetime_s: int = REQUESTED_LIFETIME_S) -> None:
        if not protocols:
            raise ValueError("a mapping client needs at least one protocol")
        self.internal_port = internal_port
        self.protocols = list(protocols)
        self.requested_lifetime_s = lifetime_s
        self.state = MappingState.STARTING
        self.external_ip: str | None = None
        self.mapping: Mapping | None = None
        self.last_result: str | None = None  # the last failure, for status
        self.counters: Counter[str] = Counter()  # drops and events
        self._protocol_index = 0
        self._last_external_port: int | None = None  # suggested again after a loss (RFC 6886 section 3.3)
        self._pending: _Request | None = None
        self._probe_due_s = 0.0
        self._mapping_due_s = 0.0
        self._quiet_until_s = 0.0  # after a failure: no new request before this
        self._epoch_s: int | None = None
        self._epoch_heard_s = 0.0

    @property
    def protocol(self) -> MappingProtocol:
        return self.protocols[self._protocol_index]

    # -- what we advertise -----------------------------------------------------------------------
    def endpoint(self) -> Endpoint | None:
        """(external ip, external port) while a mapping is held: where peers can reach us from the Internet."""
        if self.mapping is None or self.external_ip is None:
            return None
        endpoint = (self.external_ip, self.mapping.external_port)
        return endpoint if usable_endpoint(endpoint) else None

    # -- time -------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[bytes]:
        """The datagrams to send to the gateway now (a new request, or a resend)."""
        if self.state is MappingState.CLOSED:
            return []
        if self.mapping is not None and now >= self.mapping.expires_s:
            self.counters["expired"] += 1
            self.mapping = None
            self.state = MappingState.STARTING
            self._mapping_due_s = now
        if self._pending is None and now >= self._quiet_until_s:
            self._pending = self._next_request(now)
        pending = self._pending
        if pending is None or now < pending.next_send_s:
            return []
        if pending.attempts >= MAX_ATTEMPTS:
            self.counters["no_answer"] += 1
            self._unanswered(now, "no answer")
            return self.poll(now) if self._pending is None and now >= self._quiet_until_s else []
        pending.next_send_s = now + FIRST_RETRY_S * 2**pending.attempts
        pending.attempts += 1
        return [pending.payload]

    def _next_request(self, now: float) -> _Request | None:
        if now >= self._probe_due_s:
            return _Request(Step.PROBE, self.protocol.request(Step.PROBE, 0, 0), next_send_s=now)
        if self.mapping is None or now >= self._mapping_due_s:
            suggested = self._last_external_port or self.internal_port
            payload = self.protocol.request(Step.MAP, suggested, self.requested_lifetime_s)
            return _Request(Step.MAP, payload, next_send_s=now)
        return None

    def unreachable(self, now: float) -> None:
        """The gateway's port 5351 is closed (ICMP port unreachable): nobody to wait for."""
        if self._pending is not None:
            self.counters["port_unreachable"] += 1
            self._unanswered(now, "port 5351 closed")

    # -- answers ----------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, now: float) -> None:
        """An answer from the gateway (the edge already checked it came from the gateway's port 5351)."""
        pending = self._pending
        if pending is None:
            self.counters["unexpected"] += 1
            return
        answer = self.protocol.parse(pending.step, data)
        if isinstance(answer, str):
            self.counters[answer] += 1
            return
        self._pending = None
        if answer.epoch_s is not None:
            self._check_epoch(answer.epoch_s, now)
        if answer.outcome is not Outcome.SUCCESS:
            self.counters["error_results"] += 1
            self._refused(answer, now)
        elif pending.step is Step.PROBE:
            self._probe_due_s = now + CHECK_INTERVAL_S
            if answer.external_ip is not None:
                if self.external_ip is not None and answer.external_ip != self.external_ip:
                    self.counters["address_changes"] += 1
                    self._mapping_due_s = now  # the old mapping was on the old address
                self.external_ip = answer.external_ip
        else:
            self._mapped(answer, now)

    def _mapped(self, answer: Answer, now: float) -> None:
        assert answer.external_port is not None and answer.lifetime_s is not None
        if answer.external_ip is not None:
            self.external_ip = answer.external_ip
        if self.mapping is None or self.mapping.external_port != answer.external_port:
            self.counters["mappings"] += 1
        else:
            self.counters["renewals"] += 1
        self._last_external_port = answer.external_port
        self.mapping = Mapping(answer.external_port, answer.lifetime_s, now + answer.lifetime_s)
        self._mapping_due_s = now + max(MIN_RENEWAL_S, answer.lifetime_s / 2)
        self.state = MappingState.MAPPED
        self.last_result = None

    def _check_epoch(self, epoch_s: int, now: float) -> None:
        """RFC 6886 section 3.6 (PCP's rule in RFC 6887 section 8.5 is alike): an epoch behind what the time
        elapsed here predicts means the router lost its mappings; ask again now, suggesting the same port."""
        if self._epoch_s is not None:
            expected_s = self._epoch_s + (now - self._epoch_heard_s) * EPOCH_CLOCK_RATIO
            if epoch_s < expected_s - EPOCH_SLACK_S:
                self.counters["epoch_resets"] += 1
                self._mapping_due_s = now
        self._epoch_s, self._epoch_heard_s = epoch_s, now

    # -- failures ---------------------------------------------------------------------------------
    def _unanswered(self, now: float, reason: str) -> None:
        """The request in flight got no answer: a mapping in its lifetime is kept (try again before it
        ends); else the router may not speak this protocol."""
        self._pending = None
        self.last_result = reason
        if self.mapping is not None:
            self._quiet_until_s = now + min(RENEWAL_RETRY_S, max(0.0, self.mapping.expires_s - now) / 2)
            return
        self._next_protocol_or_wait(now)

    def _refused(self, answer: Answer, now: float) -> None:
        """The router answered with an error: whatever we held there is gone."""
        self.last_result = answer.reason
        self.mapping = None
        self.external_ip = None
        if answer.outcome is Outcome.UNAVAILABLE:
            self._next_protocol_or_wait(now)
        elif answer.outcome is Outcome.NO_EXTERNAL_ADDRESS:
            self._wait(now, MappingState.REFUSED, NO_EXTERNAL_ADDRESS_RETRY_S)
        else:
            self._wait(now, MappingState.REFUSED, REFUSED_RETRY_S)

    def _next_protocol_or_wait(self, now: float) -> None:
        if self._protocol_index + 1 < len(self.protocols):
            self._protocol_index += 1
            self.counters["fallbacks"] += 1
            self._wait(now, MappingState.STARTING, 0.0)
            return
        self._protocol_index = 0  # after the pause, from the first again
        self._wait(now, MappingState.UNAVAILABLE, UNAVAILABLE_RETRY_S)

    def _wait(self, now: float, state: MappingState, retry_s: float) -> None:
        self.state = state
        self._quiet_until_s = now + retry_s
        self._probe_due_s = self._mapping_due_s = 0.0
        self._epoch_s = None  # the next answer may come from another protocol, or a restarted router

    # -- the end ----------------------------------------------------------------------------------
    def release(self) -> bytes | None:
        """The request that deletes our mapping (lifetime 0), to send once on exit; None when nothing is held."""
        pending = self._pending
        held = self.mapping is not None or (pending is not None and pending.step is Step.MAP)
        self.state = MappingState.CLOSED
        self.mapping = None
        self._pending = None
        return self.protocol.request(Step.MAP, 0, 0) if held else None

    def status(self, now: float) -> dict[str, Any]:
        endpoint = self.endpoint()
        mapping = self.mapping
        return {
            "protocol": self.protocol.name,
            "state": self.state.value,
            "external": f"{endpoint[0]}:{endpoint[1]}" if endpoint else None,
            "lifetime_s": mapping.lifetime_s if mapping else None,
            "expires_in_s": round(mapping.expires_s - now, 1) if mapping else None,
            "error": self.last_result,
            "counters": dict(self.counters),
        }
