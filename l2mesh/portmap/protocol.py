"""What a port-mapping protocol tells the client (client.py): its two requests and what an answer meant.

NAT-PMP (natpmp.py) and PCP (pcp.py) differ in bytes, not in the dance:
a PROBE (NAT-PMP's external-address request, PCP's ANNOUNCE) learns that
the router is there and its epoch, a MAP asks for the port. Each protocol
turns its bytes into an Answer or names why it dropped them; the client
keeps the timers, retries, renewals and restarts for both.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


class Step(enum.Enum):
    PROBE = "probe"
    MAP = "map"


class Outcome(enum.Enum):
    SUCCESS = "success"
    UNAVAILABLE = "unavailable"  # the router does not speak this protocol (version, opcode)
    NO_EXTERNAL_ADDRESS = "no_external_address"  # it has none yet (no upstream lease): soon again
    REFUSED = "refused"  # it said no (not authorized, out of resources, ...)


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    epoch_s: int | None = None  # the router's seconds since its mapping state began (None: not its protocol's)
    reason: str | None = None  # the router's error, as its RFC names it
    external_ip: str | None = None  # NAT-PMP's PROBE, PCP's MAP
    external_port: int | None = None  # MAP
    lifetime_s: int | None = None  # MAP, as granted


class MappingProtocol(Protocol):
    name: str

    def request(self, step: Step, suggested_port: int, lifetime_s: int) -> bytes:
        """The request for step (suggested_port and lifetime_s matter to MAP only; lifetime 0 deletes)."""
        ...

    def parse(self, step: Step, data: bytes) -> Answer | str:
        """What the router's answer to step meant, or the name of the counter its drop goes to."""
        ...


def other_version(data: bytes, own_version: int) -> Answer | str:
    """A response in another version of the port-mapping protocols (both put the version in byte 0 and an
    "unsupported version" result 1 in byte 3): the router does not speak ours."""
    if len(data) >= 4 and data[3] == 1:
        return Answer(Outcome.UNAVAILABLE, reason=f"speaks version {data[0]}, not {own_version}")
    return "malformed"


def error_answer(result: int, epoch_s: int, codes: type[enum.IntEnum], unavailable: Collection[int],
                 network_failure: int) -> Answer:
    """A router's error result as an Answer: not our protocol, no external address yet, or a refusal."""
    try:
        reason = codes(result).name.lower()
    except ValueError:
        reason = f"result {result}"
    if result in unavailable:
        return Answer(Outcome.UNAVAILABLE, epoch_s, reason)
    if result == network_failure:
        return Answer(Outcome.NO_EXTERNAL_ADDRESS, epoch_s, reason)
    return Answer(Outcome.REFUSED, epoch_s, reason)
