"""A NAT-PMP client (RFC 6886), sans-IO: asks the home router to forward a UDP port to us, and keeps it.

The edge (l2mesh/edge/node/portmap.py) sends what poll() returns to the
default gateway's port 5351 and hands back what comes from there; this
class only takes bytes and the time. Steps: ask the external address, then
a UDP mapping of our port (suggesting the same port outside), renewed at
half its granted lifetime. Every ADDRESS_CHECK_S the external address is
asked again: a new address, or an epoch (the router's seconds since its
mapping table started) that went back, means the router restarted or
moved, and the mapping is requested again at once. At most one request is
in flight; it is resent after 250 ms, doubling, and given up after
MAX_ATTEMPTS (the RFC's nine tries would take 64 s: a router that has not
answered in 4 s does not speak NAT-PMP, and start-up must not wait on it).
Whatever comes back that is not the answer to the request in flight, or
does not parse, is dropped and counted.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import Any

from l2mesh.netconf import usable_endpoint
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.natpmp import (
    ERROR_RESPONSE_BYTES,
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MappingRequest,
    MappingResponse,
    Opcode,
    ResultCode,
)

REQUESTED_LIFETIME_S = 7200  # RFC 6886 section 3.3's recommendation
FIRST_RETRY_S = 0.25  # RFC 6886 section 3.1: resend after 250 ms, doubling
MAX_ATTEMPTS = 4  # sends of one request: given up 3.75 s after the first
ADDRESS_CHECK_S = 60.0  # while mapped: ask the address again (notices restarts and new addresses)
UNAVAILABLE_RETRY_S = 300.0  # no answer, or the router does not speak NAT-PMP: start over this much later
REFUSED_RETRY_S = 300.0  # the router said no (not authorized, out of resources)
NO_EXTERNAL_ADDRESS_RETRY_S = 30.0  # the router has no external address yet (no upstream lease)
RENEWAL_RETRY_S = 30.0  # a renewal went unanswered: the mapping holds until it expires, try again sooner
MIN_RENEWAL_S = 1.0  # a router granting seconds-long lifetimes gets at most one renewal a second
EPOCH_SLACK_S = 2.0  # RFC 6886 section 3.6: an epoch this far behind the expected one is a restart
EPOCH_CLOCK_RATIO = 7 / 8  # ...of the time elapsed here, in case the router's clock runs slow


class MappingState(enum.Enum):
    STARTING = "starting"  # asking, nothing known yet
    MAPPED = "mapped"
    UNAVAILABLE = "unavailable"  # no answer, or not NAT-PMP
    REFUSED = "refused"  # the router answered with an error
    CLOSED = "closed"


@dataclass(frozen=True)
class Mapping:
    external_port: int
    lifetime_s: int  # as granted
    expires_s: float  # on our clock


@dataclass
class _Request:
    opcode: Opcode
    payload: bytes
    attempts: int = 0
    next_send_s: float = 0.0


class NatPmpClient:
    """One UDP mapping of internal_port on one gateway (a new gateway gets a new client)."""

    protocol = "nat-pmp"

    def __init__(self, internal_port: int, lifetime_s: int = REQUESTED_LIFETIME_S) -> None:
        self.internal_port = internal_port
        self.requested_lifetime_s = lifetime_s
        self.state = MappingState.STARTING
        self.external_ip: str | None = None
        self.mapping: Mapping | None = None
        self._last_external_port: int | None = None  # suggested again after a loss (RFC 6886 section 3.3)
        self.last_result: str | None = None  # the router's last error, for status
        self.counters: Counter[str] = Counter()  # drops ("natpmp_*") and events
        self._pending: _Request | None = None
        self._address_due_s = 0.0
        self._mapping_due_s = 0.0
        self._quiet_until_s = 0.0  # after a failure: no new request before this
        self._epoch_s: int | None = None
        self._epoch_heard_s = 0.0

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
            self.counters["natpmp_no_answer"] += 1
            self._fail(now, MappingState.UNAVAILABLE, "no answer")
            return []
        pending.next_send_s = now + FIRST_RETRY_S * 2**pending.attempts
        pending.attempts += 1
        return [pending.payload]

    def _next_request(self, now: float) -> _Request | None:
        if self.external_ip is None or now >= self._address_due_s:
            return _Request(Opcode.EXTERNAL_ADDRESS, ExternalAddressRequest.build({}), next_send_s=now)
        if self.mapping is None or now >= self._mapping_due_s:
            suggested = self._last_external_port or self.internal_port
            return _Request(Opcode.MAP_UDP, self._mapping_request(suggested, self.requested_lifetime_s), next_send_s=now)
        return None

    def _mapping_request(self, suggested_port: int, lifetime_s: int) -> bytes:
        return MappingRequest.build({
            "opcode": Opcode.MAP_UDP, "internal_port": self.internal_port,
            "suggested_external_port": suggested_port, "lifetime_s": lifetime_s,
        })

    def unreachable(self, now: float) -> None:
        """The gateway's port 5351 is closed (ICMP port unreachable): no NAT-PMP there, no need to wait for retries."""
        if self._pending is not None:
            self.counters["natpmp_port_unreachable"] += 1
            self._fail(now, MappingState.UNAVAILABLE, "port 5351 closed")

    # -- answers ----------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, now: float) -> None:
        """An answer from the gateway (the edge already checked it came from the gateway's port 5351)."""
        pending = self._pending
        if pending is None or len(data) < 2 or data[1] != RESPONSE_BIT + pending.opcode:
            self.counters["natpmp_unexpected"] += 1
            return
        if len(data) == ERROR_RESPONSE_BYTES:
            short = parse_or_none(ErrorResponse, data)
            if short is None or short.result == ResultCode.SUCCESS:
                self.counters["natpmp_malformed"] += 1
                return
            self._answered(short.epoch_s, now)
            self._refused(short.result, now)
            return
        if pending.opcode is Opcode.EXTERNAL_ADDRESS:
            self._address_response(data, now)
        else:
            self._mapping_response(data, now)

    def _address_response(self, data: bytes, now: float) -> None:
        response = parse_or_none(ExternalAddressResponse, data)
        if response is None:
            self.counters["natpmp_malformed"] += 1
            return
        self._answered(response.epoch_s, now)
        if response.result != ResultCode.SUCCESS:
            self._refused(response.result, now)
            return
        if not usable_endpoint((response.external_ip, 1)):
            # 0.0.0.0 is the RFC's "no address yet"; loopback, multicast, broadcast are lies.
            self.counters["natpmp_bad_address"] += 1
            self._fail(now, MappingState.REFUSED, "no usable external address", forget=True,
                       retry_s=NO_EXTERNAL_ADDRESS_RETRY_S)
            return
        if self.external_ip is not None and response.external_ip != self.external_ip:
            self.counters["address_changes"] += 1
            self._mapping_due_s = now  # the old mapping was on the old address
        self.external_ip = response.external_ip
        self._address_due_s = now + ADDRESS_CHECK_S

    def _mapping_response(self, data: bytes, now: float) -> None:
        response = parse_or_none(MappingResponse, data)
        if response is None or response.internal_port != self.internal_port:
            self.counters["natpmp_malformed"] += 1
            return
        if response.result == ResultCode.SUCCESS and (response.external_port == 0 or response.lifetime_s == 0):
            self.counters["natpmp_malformed"] += 1  # a "success" that maps nothing
            return
        self._answered(response.epoch_s, now)
        if response.result != ResultCode.SUCCESS:
            self._refused(response.result, now)
            return
        if self.mapping is None or self.mapping.external_port != response.external_port:
            self.counters["mappings"] += 1
        else:
            self.counters["renewals"] += 1
        lifetime_s = response.lifetime_s
        self._last_external_port = response.external_port
        self.mapping = Mapping(response.external_port, lifetime_s, now + lifetime_s)
        self._mapping_due_s = now + max(MIN_RENEWAL_S, lifetime_s / 2)
        self.state = MappingState.MAPPED
        self.last_result = None

    def _answered(self, epoch_s: int, now: float) -> None:
        """A valid answer to the request in flight: it is done; check the router's epoch (RFC 6886 section 3.6)."""
        self._pending = None
        if self._epoch_s is not None:
            expected_s = self._epoch_s + (now - self._epoch_heard_s) * EPOCH_CLOCK_RATIO
            if epoch_s < expected_s - EPOCH_SLACK_S:
                # The router lost its mappings (restart, reset): ask again now, suggesting the same port.
                self.counters["epoch_resets"] += 1
                self._mapping_due_s = now
        self._epoch_s, self._epoch_heard_s = epoch_s, now

    def _refused(self, result: int, now: float) -> None:
        try:
            code = ResultCode(result)
        except ValueError:
            code = None
        self.counters["natpmp_error_results"] += 1
        reason = code.name.lower() if code is not None else f"result {result}"
        if code in (ResultCode.UNSUPPORTED_VERSION, ResultCode.UNSUPPORTED_OPCODE):
            self._fail(now, MappingState.UNAVAILABLE, reason, forget=True)
        elif code is ResultCode.NETWORK_FAILURE:
            self._fail(now, MappingState.REFUSED, reason, forget=True, retry_s=NO_EXTERNAL_ADDRESS_RETRY_S)
        else:
            self._fail(now, MappingState.REFUSED, reason, forget=True, retry_s=REFUSED_RETRY_S)

    def _fail(self, now: float, state: MappingState, reason: str, forget: bool = False,
              retry_s: float = UNAVAILABLE_RETRY_S) -> None:
        """The request in flight failed: keep a mapping still in its lifetime unless the router refused, retry later."""
        self._pending = None
        self.last_result = reason
        if forget:
            self.mapping = None
            self.external_ip = None
        if self.mapping is not None:
            # An unanswered renewal: the mapping holds until it expires; try again well before.
            self._quiet_until_s = now + min(RENEWAL_RETRY_S, max(0.0, self.mapping.expires_s - now) / 2)
            return
        self.state = state
        self._quiet_until_s = now + retry_s
        self._address_due_s = self._mapping_due_s = 0.0

    # -- the end ----------------------------------------------------------------------------------
    def release(self) -> bytes | None:
        """The request that deletes our mapping (lifetime 0, RFC 6886 section 3.4), to send once on exit."""
        had_mapping = self.mapping is not None or (self._pending is not None and self._pending.opcode is Opcode.MAP_UDP)
        self.state = MappingState.CLOSED
        self.mapping = None
        self._pending = None
        return self._mapping_request(0, 0) if had_mapping else None

    def status(self, now: float) -> dict[str, Any]:
        endpoint = self.endpoint()
        mapping = self.mapping
        return {
            "protocol": self.protocol,
            "state": self.state.value,
            "external": f"{endpoint[0]}:{endpoint[1]}" if endpoint else None,
            "lifetime_s": mapping.lifetime_s if mapping else None,
            "expires_in_s": round(mapping.expires_s - now, 1) if mapping else None,
            "error": self.last_result,
            "counters": dict(self.counters),
        }
