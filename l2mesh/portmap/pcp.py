"""PCP (RFC 6887) for the mapping client: its PROBE is ANNOUNCE, its MAP a MAP of UDP under one nonce.

A MAP answer carries the external address and port together, so PCP needs
no address request; the client's source address goes in every request
(the edge reads it off its socket), and the router checks it.
"""

from __future__ import annotations

import os

from l2mesh.netconf import usable_endpoint
from l2mesh.portmap.protocol import Answer, Outcome, Step, error_answer, other_version
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.pcp import (
    HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    NO_ADDRESS,
    NONCE_BYTES,
    PCP_VERSION,
    PROTOCOL_UDP,
    RESPONSE_BIT,
    AnnounceRequest,
    AnnounceResponse,
    MapRequest,
    MapResponse,
    PcpOpcode,
    PcpResult,
    ResponseHeader,
)

_OPCODES = {Step.PROBE: PcpOpcode.ANNOUNCE, Step.MAP: PcpOpcode.MAP}
_UNAVAILABLE = (PcpResult.UNSUPP_VERSION, PcpResult.UNSUPP_OPCODE, PcpResult.UNSUPP_OPTION, PcpResult.UNSUPP_PROTOCOL)


class Pcp:
    name = "pcp"

    def __init__(self, internal_port: int, client_ip: str, nonce: bytes | None = None) -> None:
        self.internal_port = internal_port
        self.client_ip = client_ip
        # One nonce for the mapping's life: renewals and the deletion must repeat it (RFC 6887 section 11.2).
        self.nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        self.external_ip = NO_ADDRESS  # suggested again on renewal

    def request(self, step: Step, suggested_port: int, lifetime_s: int) -> bytes:
        if step is Step.PROBE:
            return AnnounceRequest.build({"lifetime_s": 0, "client_ip": self.client_ip})
        return MapRequest.build({
            "lifetime_s": lifetime_s, "client_ip": self.client_ip, "nonce": self.nonce,
            "internal_port": self.internal_port, "suggested_external_port": suggested_port,
            "suggested_external_ip": self.external_ip,
        })

    def parse(self, step: Step, data: bytes) -> Answer | str:
        if len(data) < 4 or data[1] != RESPONSE_BIT | _OPCODES[step]:
            return "unexpected"
        if data[0] != PCP_VERSION:
            return other_version(data, PCP_VERSION)
        if len(data) > MAX_MESSAGE_BYTES or len(data) < HEADER_BYTES or len(data) % 4:
            return "malformed"  # RFC 6887 section 7: a multiple of 4 bytes, at most 1100
        header = parse_or_none(ResponseHeader, data)
        if header is None:
            return "malformed"
        if header.result != PcpResult.SUCCESS:
            if step is Step.MAP and len(data) >= HEADER_BYTES + NONCE_BYTES and data[HEADER_BYTES:HEADER_BYTES + NONCE_BYTES] != self.nonce:
                return "unexpected"  # an error about someone else's mapping
            return _error(header.result, header.epoch_s)
        if step is Step.PROBE:
            return Answer(Outcome.SUCCESS, header.epoch_s) if parse_or_none(AnnounceResponse, data) else "malformed"
        mapping = parse_or_none(MapResponse, data)
        if mapping is None or mapping.nonce != self.nonce:
            return "unexpected" if mapping is not None else "malformed"
        if mapping.protocol != PROTOCOL_UDP or mapping.internal_port != self.internal_port:
            return "malformed"
        if mapping.external_port == 0 or mapping.lifetime_s == 0:
            return "malformed"  # a "success" that maps nothing
        if not usable_endpoint((mapping.external_ip, mapping.external_port)) or ":" in mapping.external_ip:
            return Answer(Outcome.NO_EXTERNAL_ADDRESS, header.epoch_s, f"external address {mapping.external_ip}")
        self.external_ip = mapping.external_ip
        return Answer(Outcome.SUCCESS, header.epoch_s, external_ip=mapping.external_ip,
                      external_port=mapping.external_port, lifetime_s=mapping.lifetime_s)



def _error(result: int, epoch_s: int) -> Answer:
    return error_answer(result, epoch_s, PcpResult, _UNAVAILABLE, PcpResult.NETWORK_FAILURE)
