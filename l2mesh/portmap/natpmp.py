"""NAT-PMP (RFC 6886) for the mapping client: its PROBE is the external-address request, its MAP a UDP mapping."""

from __future__ import annotations

from l2mesh.netconf import usable_endpoint
from l2mesh.portmap.protocol import Answer, Outcome, Step, error_answer, other_version
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.natpmp import (
    ERROR_RESPONSE_BYTES,
    NATPMP_VERSION,
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MappingRequest,
    MappingResponse,
    Opcode,
    ResultCode,
)

_OPCODES = {Step.PROBE: Opcode.EXTERNAL_ADDRESS, Step.MAP: Opcode.MAP_UDP}


class NatPmp:
    name = "nat-pmp"

    def __init__(self, internal_port: int) -> None:
        self.internal_port = internal_port

    def request(self, step: Step, suggested_port: int, lifetime_s: int) -> bytes:
        if step is Step.PROBE:
            return ExternalAddressRequest.build({})
        return MappingRequest.build({
            "opcode": Opcode.MAP_UDP, "internal_port": self.internal_port,
            # RFC 6886 section 3.4: a deletion suggests port 0.
            "suggested_external_port": suggested_port if lifetime_s else 0, "lifetime_s": lifetime_s,
        })

    def parse(self, step: Step, data: bytes) -> Answer | str:
        if len(data) < 4 or data[1] != RESPONSE_BIT + _OPCODES[step]:
            return "unexpected"
        if data[0] != NATPMP_VERSION:
            return other_version(data, NATPMP_VERSION)
        if len(data) == ERROR_RESPONSE_BYTES:
            short = parse_or_none(ErrorResponse, data)
            if short is None or short.result == ResultCode.SUCCESS:
                return "malformed"  # an 8-byte "success" answers nothing
            return _error(short.result, short.epoch_s)
        if step is Step.PROBE:
            address = parse_or_none(ExternalAddressResponse, data)
            if address is None:
                return "malformed"
            if address.result != ResultCode.SUCCESS:
                return _error(address.result, address.epoch_s)
            if not usable_endpoint((address.external_ip, 1)):
                # 0.0.0.0 is the RFC's "no address yet"; loopback, multicast, broadcast are lies.
                return Answer(Outcome.NO_EXTERNAL_ADDRESS, address.epoch_s, f"external address {address.external_ip}")
            return Answer(Outcome.SUCCESS, address.epoch_s, external_ip=address.external_ip)
        mapping = parse_or_none(MappingResponse, data)
        if mapping is None or mapping.internal_port != self.internal_port:
            return "malformed"
        if mapping.result != ResultCode.SUCCESS:
            return _error(mapping.result, mapping.epoch_s)
        if mapping.external_port == 0 or mapping.lifetime_s == 0:
            return "malformed"  # a "success" that maps nothing
        return Answer(Outcome.SUCCESS, mapping.epoch_s, external_port=mapping.external_port, lifetime_s=mapping.lifetime_s)



def _error(result: int, epoch_s: int) -> Answer:
    return error_answer(result, epoch_s, ResultCode, (ResultCode.UNSUPPORTED_VERSION, ResultCode.UNSUPPORTED_OPCODE),
                        ResultCode.NETWORK_FAILURE)
