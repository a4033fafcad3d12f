"""Port mapping: NAT-PMP wire formats (RFC 6886), the sans-IO client's state machine, and the edge's gateway look-up."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.edge.node.portmap import PortMapper, default_gateway, protocol_order
from l2mesh.errors import L2meshError
from l2mesh.portmap.client import (
    CHECK_INTERVAL_S,
    MAX_ATTEMPTS,
    REFUSED_RETRY_S,
    UNAVAILABLE_RETRY_S,
    MappingClient,
    MappingState,
)
from l2mesh.portmap.natpmp import NatPmp
from l2mesh.portmap.pcp import Pcp
from l2mesh.portmap.protocol import Step
from l2mesh.wire.errors import ParseError, parse_exact
from l2mesh.wire.natpmp import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MappingRequest,
    MappingResponse,
    Opcode,
    ResultCode,
)
from l2mesh.wire.pcp import AnnounceResponse, MapRequest, MapResponse, PcpResult

PORT = 9993
EXTERNAL_IP = "198.18.3.2"


# -- wire ------------------------------------------------------------------------------------------


def test_requests_are_the_bytes_rfc_6886_gives() -> None:
    assert ExternalAddressRequest.build({}) == b"\x00\x00"
    request = MappingRequest.build(
        {"opcode": Opcode.MAP_UDP, "internal_port": 9993, "suggested_external_port": 9993, "lifetime_s": 7200}
    )
    # version 0, opcode 1 (UDP), reserved, internal port, suggested external port, lifetime.
    assert request == bytes.fromhex("0001 0000 2709 2709 00001c20")


def test_responses_parse_as_miniupnpd_sends_them() -> None:
    # Captured from miniupnpd 2.3.1 in the lab: the address, then a UDP mapping of 9993 for 7200 s.
    address = parse_exact(ExternalAddressResponse, bytes.fromhex("0080 0000 00000000 c6120102"))
    assert (address.result, address.epoch_s, address.external_ip) == (0, 0, "198.18.1.2")
    mapping = parse_exact(MappingResponse, bytes.fromhex("0081 0000 00000000 2709 2709 00001c20"))
    assert (mapping.internal_port, mapping.external_port, mapping.lifetime_s) == (9993, 9993, 7200)


@pytest.mark.parametrize(
    "definition, data",
    [
        (ExternalAddressResponse, bytes.fromhex("0080 0000 00000000 c61201")),  # truncated
        (ExternalAddressResponse, bytes.fromhex("0080 0000 00000000 c6120102 00")),  # trailing byte
        (ExternalAddressResponse, bytes.fromhex("0180 0000 00000000 c6120102")),  # version 1
        (MappingResponse, bytes.fromhex("0082 0000 00000000 2709 2709 00001c20 ff")),
        (MappingResponse, bytes.fromhex("0083 0000 00000000 2709 2709 00001c20")),  # no such opcode
        (MappingRequest, bytes.fromhex("0001 0001 2709 2709 00001c20")),  # reserved not zero
        (ErrorResponse, b"\x00\x81\x00"),
    ],
)
def test_malformed_messages_are_refused(definition: object, data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_exact(definition, data)  # type: ignore[arg-type]


# -- a router in a test ----------------------------------------------------------------------------


def address_response(epoch_s: int, ip: str = EXTERNAL_IP, result: int = ResultCode.SUCCESS) -> bytes:
    return ExternalAddressResponse.build({"result": result, "epoch_s": epoch_s, "external_ip": ip})


def mapping_response(epoch_s: int, external_port: int, lifetime_s: int = 7200, result: int = ResultCode.SUCCESS,
                     internal_port: int = PORT) -> bytes:
    return MappingResponse.build({
        "opcode": 128 + Opcode.MAP_UDP, "result": result, "epoch_s": epoch_s,
        "internal_port": internal_port, "external_port": external_port, "lifetime_s": lifetime_s,
    })


def natpmp_client() -> MappingClient:
    return MappingClient(PORT, [NatPmp(PORT)])


def mapped_client(lifetime_s: int = 7200, external_port: int = 40000) -> MappingClient:
    """A client that asked at time 0 and holds a mapping granted with epoch 1000."""
    client = natpmp_client()
    assert client.poll(0.0) == [ExternalAddressRequest.build({})]
    client.datagram_received(address_response(1000), 0.0)
    [request] = client.poll(0.0)
    assert parse_exact(MappingRequest, request).suggested_external_port == PORT
    client.datagram_received(mapping_response(1000, external_port, lifetime_s), 0.0)
    return client


def kinds(datagrams: list[bytes]) -> list[str]:
    return ["address" if d[1] == Opcode.EXTERNAL_ADDRESS else "map" for d in datagrams]


# -- the client ------------------------------------------------------------------------------------


def test_asks_the_address_then_maps_and_advertises_the_external_endpoint() -> None:
    client = mapped_client()
    assert client.state is MappingState.MAPPED
    assert client.endpoint() == (EXTERNAL_IP, 40000)
    assert client.poll(1.0) == []  # nothing due
    status = client.status(10.0)
    assert status["external"] == f"{EXTERNAL_IP}:40000" and status["lifetime_s"] == 7200
    assert status["expires_in_s"] == 7190.0 and status["protocol"] == "nat-pmp"


def test_resends_after_250_ms_doubling_then_gives_up_and_tries_again_much_later() -> None:
    client = natpmp_client()
    sent_at = [t / 100 for t in range(0, 1000) if client.poll(t / 100)]
    assert sent_at == [0.0, 0.25, 0.75, 1.75][:MAX_ATTEMPTS]
    assert client.state is MappingState.UNAVAILABLE and client.endpoint() is None
    assert client.counters["no_answer"] == 1
    assert client.poll(3.75 + UNAVAILABLE_RETRY_S - 1) == []
    assert kinds(client.poll(3.75 + UNAVAILABLE_RETRY_S)) == ["address"]


def test_a_closed_port_gives_up_at_once() -> None:
    client = natpmp_client()
    client.poll(0.0)
    client.unreachable(0.01)
    assert client.state is MappingState.UNAVAILABLE
    assert client.poll(1.0) == []


def test_renews_at_half_the_granted_lifetime_suggesting_the_same_port() -> None:
    client = mapped_client(lifetime_s=100)
    assert client.poll(49.9) == []
    [renewal] = client.poll(50.0)
    request = parse_exact(MappingRequest, renewal)
    assert (request.suggested_external_port, request.lifetime_s) == (40000, 7200)
    client.datagram_received(mapping_response(1050, 40000, lifetime_s=100), 50.0)
    assert client.counters["renewals"] == 1 and client.endpoint() == (EXTERNAL_IP, 40000)
    assert client.status(50.0)["expires_in_s"] == 100.0


def test_an_unanswered_renewal_keeps_the_mapping_until_it_expires() -> None:
    client = mapped_client(lifetime_s=100)
    for tenth in range(500, 1000):
        client.poll(tenth / 10)
    assert client.endpoint() == (EXTERNAL_IP, 40000)  # at 99.9 s, still in its lifetime
    client.poll(100.0)
    assert client.endpoint() is None and client.counters["expired"] == 1
    # The router answers again: the port it had is asked for (the router may still give it).
    client.datagram_received(address_response(1100), 100.0)
    [request] = client.poll(100.0)
    assert parse_exact(MappingRequest, request).suggested_external_port == 40000


def test_checks_the_address_every_minute_and_a_steady_epoch_changes_nothing() -> None:
    client = mapped_client()
    assert kinds(client.poll(CHECK_INTERVAL_S)) == ["address"]
    client.datagram_received(address_response(1000 + int(CHECK_INTERVAL_S)), CHECK_INTERVAL_S)
    assert client.poll(CHECK_INTERVAL_S) == []
    assert client.counters["epoch_resets"] == 0


def test_an_epoch_that_went_back_means_a_router_restart_and_maps_again_at_once() -> None:
    client = mapped_client()
    client.poll(CHECK_INTERVAL_S)
    client.datagram_received(address_response(5), CHECK_INTERVAL_S)  # the router's table is 5 s old
    assert client.counters["epoch_resets"] == 1
    [request] = client.poll(CHECK_INTERVAL_S)
    assert parse_exact(MappingRequest, request).suggested_external_port == 40000
    client.datagram_received(mapping_response(5, 40001), CHECK_INTERVAL_S)
    assert client.endpoint() == (EXTERNAL_IP, 40001)


def test_an_epoch_within_the_clock_slack_is_no_restart() -> None:
    client = mapped_client()
    client.poll(CHECK_INTERVAL_S)
    # 7/8 of 60 s is 52.5 s; 51 s behind by less than 2 s of slack.
    client.datagram_received(address_response(1051), CHECK_INTERVAL_S)
    assert client.counters["epoch_resets"] == 0


def test_a_new_external_address_is_advertised_and_mapped_again() -> None:
    client = mapped_client()
    client.poll(CHECK_INTERVAL_S)
    client.datagram_received(address_response(1060, ip="198.18.9.2"), CHECK_INTERVAL_S)
    assert client.counters["address_changes"] == 1
    assert kinds(client.poll(CHECK_INTERVAL_S)) == ["map"]


def test_a_refusal_forgets_the_mapping_and_waits_before_asking_again() -> None:
    client = mapped_client(lifetime_s=100)
    client.poll(50.0)
    client.datagram_received(mapping_response(1050, 0, 0, result=ResultCode.NOT_AUTHORIZED), 50.0)
    assert client.state is MappingState.REFUSED and client.endpoint() is None
    assert client.status(50.0)["error"] == "not_authorized"
    assert client.poll(50.0 + REFUSED_RETRY_S - 1) == []
    assert kinds(client.poll(50.0 + REFUSED_RETRY_S)) == ["address"]


def test_a_router_that_speaks_another_version_is_unavailable() -> None:
    client = natpmp_client()
    client.poll(0.0)
    client.datagram_received(ErrorResponse.build({"opcode": 128, "result": ResultCode.UNSUPPORTED_VERSION, "epoch_s": 7}), 0.0)
    assert client.state is MappingState.UNAVAILABLE


@pytest.mark.parametrize("ip", ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"])
def test_no_usable_external_address_means_no_mapping(ip: str) -> None:
    client = natpmp_client()
    client.poll(0.0)
    client.datagram_received(address_response(0, ip=ip), 0.0)
    assert client.state is MappingState.REFUSED and client.poll(1.0) == []
    assert client.endpoint() is None


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"\x00",
        mapping_response(1000, 40000),  # answers a request not in flight (the address is)
        address_response(1000) + b"\x00",
        ErrorResponse.build({"opcode": 128, "result": ResultCode.SUCCESS, "epoch_s": 1}),  # an 8-byte "success"
    ],
)
def test_garbage_is_dropped_and_counted_and_the_request_stays_in_flight(answer: bytes) -> None:
    client = natpmp_client()
    client.poll(0.0)
    client.datagram_received(answer, 0.0)
    assert client.counters["malformed"] + client.counters["unexpected"] == 1
    assert client.state is MappingState.STARTING
    client.datagram_received(address_response(1000), 0.1)  # the real answer still counts
    assert kinds(client.poll(0.1)) == ["map"]


@pytest.mark.parametrize(
    "answer",
    [
        mapping_response(1000, 40000, internal_port=22),  # someone else's mapping
        mapping_response(1000, 0),  # "success" with no port
        mapping_response(1000, 40000, lifetime_s=0),  # "success" already over
    ],
)
def test_a_mapping_answer_that_maps_nothing_of_ours_is_dropped(answer: bytes) -> None:
    client = natpmp_client()
    client.poll(0.0)
    client.datagram_received(address_response(1000), 0.0)
    client.poll(0.0)
    client.datagram_received(answer, 0.0)
    assert client.counters["malformed"] == 1 and client.endpoint() is None


def test_an_answer_with_nothing_in_flight_is_unexpected() -> None:
    client = mapped_client()
    client.datagram_received(mapping_response(1000, 40000), 1.0)
    assert client.counters["unexpected"] == 1 and client.endpoint() == (EXTERNAL_IP, 40000)


ports = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)
natpmp_answers = st.one_of(
    st.binary(max_size=24),
    st.builds(address_response, u32, st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
              st.integers(0, 65535)),
    st.builds(mapping_response, u32, ports, u32, st.integers(0, 65535), st.one_of(st.just(PORT), ports)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(natpmp_answers, st.floats(min_value=0, max_value=10_000)), max_size=12))
def test_hostile_answers_never_raise_and_never_advertise_a_bad_endpoint(answers: list[tuple[bytes, float]]) -> None:
    client = natpmp_client()
    for data, now in sorted(answers, key=lambda a: a[1]):
        client.poll(now)
        client.datagram_received(data, now)
        endpoint = client.endpoint()
        if endpoint is not None:
            host, port = endpoint
            address = ipaddress.IPv4Address(host)
            assert 0 < port < 65536 and not (address.is_loopback or address.is_multicast or address.is_unspecified)
        client.status(now)


def test_release_deletes_the_mapping_with_lifetime_zero() -> None:
    client = mapped_client()
    request = parse_exact(MappingRequest, client.release())
    assert (request.internal_port, request.suggested_external_port, request.lifetime_s) == (PORT, 0, 0)
    assert client.state is MappingState.CLOSED and client.poll(10_000.0) == []
    assert natpmp_client().release() is None  # nothing asked, nothing to delete


# -- the edge ----------------------------------------------------------------------------------------

ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0000FEC6\t0113FEC6\t0003\t0\t0\t0\t0000FEFF\t0\t0\t0
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
wlan0\t00000000\t0102A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0
eth1\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


@pytest.mark.skipif(struct.pack("=I", 1)[0] != 1, reason="the sample table is a little-endian host's")
def test_the_default_gateway_is_the_default_route_with_the_lowest_metric() -> None:
    assert default_gateway(ROUTES) == "192.168.2.1"
    assert default_gateway(ROUTES.replace("\t50\t", "\t500\t")) == "192.168.1.1"
    assert default_gateway(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[1]) is None  # no default route
    assert default_gateway("garbage\nnot a route table at all\n") is None


class FakeReactor:
    def __init__(self) -> None:
        self.readers: dict[int, Callable[[], None]] = {}

    def add_reader(self, fd: int, on_readable: Callable[[], None]) -> None:
        self.readers[fd] = on_readable

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)


def test_the_edge_maps_through_a_gateway_and_deletes_the_mapping_on_close() -> None:
    # A NAT-PMP "router" on loopback (the only place a unit test may send to).
    router = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    router.bind(("127.0.0.1", 0))
    router.settimeout(2)
    reactor = FakeReactor()
    clock = [0.0]
    mapper = PortMapper(reactor, PORT, find_gateway=lambda: "127.0.0.1", clock=lambda: clock[0],  # type: ignore[arg-type]
                        gateway_port=router.getsockname()[1])
    try:
        assert mapper.tick(0.0) is False
        request, client_at = router.recvfrom(64)
        assert request == ExternalAddressRequest.build({})
        router.sendto(address_response(7), client_at)
        [readable] = reactor.readers.values()
        readable()  # the address, and the mapping request goes out at once
        assert parse_exact(MappingRequest, router.recv(64)).internal_port == PORT
        router.sendto(mapping_response(7, 41641), client_at)
        readable()
        assert mapper.tick(0.1) is True  # the endpoint changed: the daemon announces it
        assert mapper.endpoints() == [(EXTERNAL_IP, 41641)]
        assert mapper.status(0.1)["gateway"] == "127.0.0.1" and mapper.tick(0.2) is False
        mapper.close()
        assert parse_exact(MappingRequest, router.recv(64)).lifetime_s == 0
        assert reactor.readers == {}
    finally:
        router.close()


def test_with_no_default_route_the_edge_asks_nobody() -> None:
    reactor = FakeReactor()
    mapper = PortMapper(reactor, PORT, find_gateway=lambda: None)  # type: ignore[arg-type]
    assert mapper.tick(0.0) is False and mapper.endpoints() == []
    assert mapper.status(0.0)["state"] == "no-gateway" and reactor.readers == {}


# -- PCP (RFC 6887) and falling back between protocols -------------------------------------------------

CLIENT_IP = "198.19.1.2"
NONCE = bytes(range(1, 13))


def pcp_map_response(epoch_s: int, external_port: int, lifetime_s: int = 7200, result: int = PcpResult.SUCCESS,
                     nonce: bytes = NONCE, ip: str = EXTERNAL_IP) -> bytes:
    return MapResponse.build({
        "result": result, "lifetime_s": lifetime_s, "epoch_s": epoch_s, "reserved2": bytes(12), "nonce": nonce,
        "protocol": 17, "reserved3": bytes(3), "internal_port": PORT, "external_port": external_port,
        "external_ip": ip, "options": b"",
    })


def pcp_announce_response(epoch_s: int, result: int = PcpResult.SUCCESS) -> bytes:
    return AnnounceResponse.build({"result": result, "lifetime_s": 0, "epoch_s": epoch_s, "reserved2": bytes(12),
                                   "options": b""})


def pcp_client() -> MappingClient:
    return MappingClient(PORT, [Pcp(PORT, CLIENT_IP, NONCE)])


def test_pcp_map_request_is_the_rfc_6887_layout() -> None:
    request = Pcp(PORT, CLIENT_IP, NONCE).request(Step.MAP, 9993, 7200)
    assert request == bytes.fromhex(
        "02 01 0000 00001c20" "00000000000000000000ffffc6130102"  # version, MAP, lifetime, client ::ffff:198.19.1.2
        "0102030405060708090a0b0c" "11 000000 2709 2709"  # nonce, UDP, internal and suggested port
        "00000000000000000000ffff00000000"  # suggested external address: none (::ffff:0.0.0.0)
    )
    assert len(Pcp(PORT, CLIENT_IP, NONCE).request(Step.PROBE, 0, 0)) == 24  # ANNOUNCE: the header alone


def test_pcp_announces_then_maps_and_renews_with_the_same_nonce_and_address() -> None:
    client = pcp_client()
    [probe] = client.poll(0.0)
    assert probe[:2] == b"\x02\x00"
    client.datagram_received(pcp_announce_response(500), 0.0)
    [request] = client.poll(0.0)
    client.datagram_received(pcp_map_response(500, 40000, lifetime_s=100), 0.0)
    assert client.endpoint() == (EXTERNAL_IP, 40000) and client.status(0.0)["protocol"] == "pcp"
    [renewal] = client.poll(50.0)
    parsed = parse_exact(MapRequest, renewal)
    assert (parsed.nonce, parsed.suggested_external_port, parsed.suggested_external_ip) == (NONCE, 40000, EXTERNAL_IP)


def test_pcp_answers_for_another_nonce_are_not_ours() -> None:
    client = pcp_client()
    client.poll(0.0)
    client.datagram_received(pcp_announce_response(500), 0.0)
    client.poll(0.0)
    client.datagram_received(pcp_map_response(500, 40000, nonce=bytes(12)), 0.0)
    client.datagram_received(pcp_map_response(500, 0, result=PcpResult.NOT_AUTHORIZED, nonce=bytes(12)), 0.0)
    assert client.counters["unexpected"] == 2 and client.endpoint() is None
    client.datagram_received(pcp_map_response(500, 40000), 0.0)
    assert client.endpoint() == (EXTERNAL_IP, 40000)


@pytest.mark.parametrize("data", [pcp_map_response(500, 40000)[:-4], pcp_map_response(500, 40000) + b"\x00",
                                  pcp_map_response(500, 40000, lifetime_s=0), pcp_map_response(500, 40000, ip="127.0.0.1")])
def test_pcp_garbage_is_dropped_or_refused_never_advertised(data: bytes) -> None:
    client = pcp_client()
    client.poll(0.0)
    client.datagram_received(pcp_announce_response(500), 0.0)
    client.poll(0.0)
    client.datagram_received(data, 0.0)
    assert client.endpoint() is None


def test_a_router_that_speaks_only_pcp_is_asked_in_pcp_at_once() -> None:
    client = MappingClient(PORT, [NatPmp(PORT), Pcp(PORT, CLIENT_IP, NONCE)])
    [natpmp] = client.poll(0.0)
    assert natpmp == ExternalAddressRequest.build({})
    # A PCP-only server answers a version-0 request with its own version and UNSUPP_VERSION.
    client.datagram_received(pcp_announce_response(500, result=PcpResult.UNSUPP_VERSION), 0.0)
    assert client.counters["fallbacks"] == 1 and client.status(0.0)["protocol"] == "pcp"
    [announce] = client.poll(0.0)
    assert announce[:2] == b"\x02\x00"


def test_a_router_that_speaks_only_nat_pmp_is_asked_in_nat_pmp_at_once() -> None:
    client = MappingClient(PORT, [Pcp(PORT, CLIENT_IP, NONCE), NatPmp(PORT)])
    client.poll(0.0)
    # What a NAT-PMP-only router answers to version 2 (RFC 6886 section 3.5): version 0, result 1.
    client.datagram_received(ErrorResponse.build({"opcode": 128, "result": ResultCode.UNSUPPORTED_VERSION, "epoch_s": 9}), 0.0)
    assert kinds(client.poll(0.0)) == ["address"] and client.status(0.0)["protocol"] == "nat-pmp"


def test_silence_in_every_protocol_waits_then_starts_over_from_the_first() -> None:
    client = MappingClient(PORT, [NatPmp(PORT), Pcp(PORT, CLIENT_IP, NONCE)])
    sends = [(t / 100, d) for t in range(0, 1000) for d in client.poll(t / 100)]
    assert len(sends) == 2 * MAX_ATTEMPTS  # four of each, then nothing
    assert [d[0] for _, d in sends] == [0] * MAX_ATTEMPTS + [2] * MAX_ATTEMPTS
    assert client.state is MappingState.UNAVAILABLE and client.counters["no_answer"] == 2
    [again] = client.poll(7.5 + UNAVAILABLE_RETRY_S)
    assert again == ExternalAddressRequest.build({})


def test_a_closed_port_skips_every_protocol_at_once() -> None:
    client = MappingClient(PORT, [NatPmp(PORT), Pcp(PORT, CLIENT_IP, NONCE)])
    client.poll(0.0)
    client.unreachable(0.0)
    client.poll(0.0)
    client.unreachable(0.0)
    assert client.state is MappingState.UNAVAILABLE and client.poll(1.0) == []


pcp_answers = st.one_of(
    st.binary(max_size=72),
    st.builds(pcp_announce_response, u32, st.integers(0, 255)),
    st.builds(pcp_map_response, u32, ports, u32, st.integers(0, 255), st.sampled_from([NONCE, bytes(12)]),
              st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(natpmp_answers, pcp_answers), st.floats(min_value=0, max_value=10_000)), max_size=12))
def test_hostile_answers_to_both_protocols_never_raise(sequence: list[tuple[bytes, float]]) -> None:
    client = MappingClient(PORT, [NatPmp(PORT), Pcp(PORT, CLIENT_IP, NONCE)])
    for data, now in sorted(sequence, key=lambda a: a[1]):
        client.poll(now)
        client.datagram_received(data, now)
        endpoint = client.endpoint()
        if endpoint is not None:
            assert not ipaddress.IPv4Address(endpoint[0]).is_unspecified and endpoint[1] > 0
        client.status(now)
    deletion = client.release()
    assert deletion is None or len(deletion) in (12, 60)  # NAT-PMP's or PCP's MAP with lifetime 0


def test_the_protocol_order_comes_from_the_environment_variable() -> None:
    assert protocol_order(None) == ("nat-pmp", "pcp")
    assert protocol_order("pcp") == ("pcp",)
    assert protocol_order(" pcp , nat-pmp ") == ("pcp", "nat-pmp")
    with pytest.raises(L2meshError):
        protocol_order("upnp")
