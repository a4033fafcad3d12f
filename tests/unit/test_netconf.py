"""l2mesh.netconf: the network config document, its JSON form and its controller signature."""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.errors import L2meshError
from l2mesh.identity import Identity
from l2mesh.ids import format_mac, format_node_id, make_network_id, member_mac
from l2mesh.netconf import (
    MAX_MTU_BYTES,
    MIN_MTU_BYTES,
    MemberConfig,
    NetconfError,
    NetworkConfig,
    parse_endpoint,
    verify_signed_config,
)
from l2mesh.managed_routes import ManagedRoute
from l2mesh.rules import parse_rules

SETTINGS = settings(max_examples=40, deadline=None)
CONTROLLER = Identity.generate()
IMPOSTOR = Identity.generate()
M1, M2, M3 = Identity.generate(), Identity.generate(), Identity.generate()
NET = make_network_id(CONTROLLER.node_id, 0x42)


NOW = 1_700_000_100.0  # wall clock of the tests: inside make_config's validity


def make_config(issued_to: Identity = M1, **changes) -> NetworkConfig:
    config = NetworkConfig(
        network_id=NET,
        revision=3,
        issued_to=issued_to.node_id,
        name="lab",
        timestamp_s=1_700_000_000.25,
        expires_s=1_700_604_800.25,
        mtu_bytes=2800,
        multicast_limit=None,
        members=(
            MemberConfig(M1.node_id, M1.public, ips=("10.147.17.1/24",), endpoints=(("198.18.1.2", 9993),), name="one"),
            MemberConfig(
                M2.node_id,
                M2.public,
                ips=("10.147.17.2/24", "fd00::2/64"),
                bridge=True,
                endpoints=(("2001:db8::1", 9993), ("198.18.2.2", 9994)),
            ),
        ),
        routes=(ManagedRoute("10.147.17.0/24"), ManagedRoute("198.19.200.0/24", "10.147.17.2")),
    )
    return config.with_changes(**changes)


def sign_doc(doc: dict, signer: Identity = CONTROLLER) -> bytes:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return signer.sign(body) + body


def assert_one_line_netconf_error(excinfo: pytest.ExceptionInfo) -> None:
    assert isinstance(excinfo.value, NetconfError)
    assert isinstance(excinfo.value, L2meshError)
    message = str(excinfo.value)
    assert message and "\n" not in message and "\r" not in message


# -- JSON --------------------------------------------------------------------------------------------


def test_json_round_trip_gives_an_equal_config() -> None:
    config = make_config()
    assert NetworkConfig.from_json(config.to_json()) == config
    assert NetworkConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_json_lists_member_macs_derived_from_their_ids() -> None:
    doc = make_config().to_json()
    assert [m["mac"] for m in doc["members"]] == [format_mac(member_mac(m.node_id, NET)) for m in (M1, M2)]
    assert doc["id"] == f"{NET:016x}" and doc["issued_to"] == format_node_id(M1.node_id)


endpoints = st.tuples(
    st.ip_addresses().filter(lambda a: not (a.is_multicast or a.is_loopback or a.is_unspecified or str(a) == "255.255.255.255")).map(str),
    st.integers(1, 65535),
)


@SETTINGS
@given(
    revision=st.integers(0, 2**63),
    name=st.text(max_size=20),
    mtu=st.integers(MIN_MTU_BYTES, MAX_MTU_BYTES),
    multicast_limit=st.none() | st.integers(1, 10_000),
    broadcast=st.booleans(),
    private=st.booleans(),
    timestamp=st.floats(0, 2e9, allow_nan=False),
    member_endpoints=st.lists(st.lists(endpoints, max_size=3).map(tuple), min_size=3, max_size=3),
    bridges=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_json_round_trip_for_arbitrary_settings(
    revision, name, mtu, multicast_limit, broadcast, private, timestamp, member_endpoints, bridges
) -> None:
    config = NetworkConfig(
        network_id=NET,
        revision=revision,
        issued_to=M2.node_id,
        name=name,
        timestamp_s=timestamp,
        mtu_bytes=mtu,
        multicast_limit=multicast_limit,
        broadcast=broadcast,
        private=private,
        members=tuple(
            MemberConfig(m.node_id, m.public, bridge=b, endpoints=e, name=name)
            for m, b, e in zip((M1, M2, M3), bridges, member_endpoints)
        ),
    )
    signed = config.sign(CONTROLLER)
    assert verify_signed_config(signed, CONTROLLER.public, NET, M2.node_id, NOW) == config


def test_ipv6_endpoints_round_trip_in_brackets() -> None:
    assert parse_endpoint("[2001:db8::1]:9993") == ("2001:db8::1", 9993)
    assert parse_endpoint("198.18.1.2:9993") == ("198.18.1.2", 9993)
    config = make_config()
    doc = config.to_json()
    assert doc["members"][1]["endpoints"] == ["[2001:db8::1]:9993", "198.18.2.2:9994"]
    assert NetworkConfig.from_json(doc).members[1].endpoints == (("2001:db8::1", 9993), ("198.18.2.2", 9994))


def test_endpoint_hosts_are_normalised() -> None:
    assert parse_endpoint("[2001:0db8:0000::0001]:1") == ("2001:db8::1", 1)
    assert parse_endpoint("198.18.1.2:65535") == ("198.18.1.2", 65535)


# -- signatures ----------------------------------------------------------------------------------------


def test_signed_config_verifies_against_the_controller_key() -> None:
    config = make_config()
    signed = config.sign(CONTROLLER)
    assert signed[64:] == config.canonical_bytes()
    assert verify_signed_config(signed, CONTROLLER.public, NET, M1.node_id, NOW) == config


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    config = make_config()
    shuffled = dict(reversed(list(config.to_json().items())))
    assert NetworkConfig.from_json(shuffled).canonical_bytes() == config.canonical_bytes()


def _member_keys_hash_to_another_id(doc: dict) -> None:
    doc["members"][0]["id"] = format_node_id(M3.node_id)
    doc["members"][0].pop("mac")


def _mac_not_derived_from_id(doc: dict) -> None:
    doc["members"][0]["mac"] = "02:00:00:00:00:01"


def _duplicate_member(doc: dict) -> None:
    doc["members"].append(copy.deepcopy(doc["members"][0]))


def _mtu(value: int):
    def change(doc: dict) -> None:
        doc["mtu"] = value

    return change


DOCUMENT_CORRUPTIONS = {
    "member-keys-hash-to-another-id": _member_keys_hash_to_another_id,
    "mac-not-derived-from-id": _mac_not_derived_from_id,
    "duplicate-member": _duplicate_member,
    "mtu-too-small": _mtu(1279),
    "mtu-too-large": _mtu(9001),
    "mtu-zero": _mtu(0),
    "missing-revision": lambda doc: doc.pop("revision"),
    "bad-network-id": lambda doc: doc.update(id="xyz"),
    "members-not-objects": lambda doc: doc.update(members=["m1"]),
}


BAD_ENDPOINTS = {
    "without-port": "198.18.1.2",
    "not-an-ip": "x:1",
    "port-zero": "198.18.1.2:0",
    "port-too-large": "198.18.1.2:70000",
    "not-a-string": 9993,
    "unspecified": "0.0.0.0:9993",
    "multicast": "224.0.0.1:9993",
    "loopback": "127.0.0.1:9993",
    "broadcast": "255.255.255.255:9993",
}


@pytest.mark.parametrize("bad", list(BAD_ENDPOINTS.values()), ids=list(BAD_ENDPOINTS))
def test_an_unusable_endpoint_is_skipped_without_refusing_the_signed_config(bad) -> None:
    # One member's bad endpoint must not make every member refuse every config (a network-wide freeze).
    doc = make_config().to_json()
    doc["members"][0]["endpoints"] = [bad, "198.18.1.2:9993"]
    config = NetworkConfig.from_json(doc)
    assert config.members[0].endpoints == (("198.18.1.2", 9993),)


@pytest.mark.parametrize("corrupt", list(DOCUMENT_CORRUPTIONS.values()), ids=list(DOCUMENT_CORRUPTIONS))
def test_signed_but_invalid_document_is_refused_with_a_one_line_netconf_error(corrupt) -> None:
    doc = make_config().to_json()
    corrupt(doc)
    with pytest.raises(NetconfError) as excinfo:
        verify_signed_config(sign_doc(doc), CONTROLLER.public, NET, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)
    with pytest.raises(NetconfError):
        NetworkConfig.from_json(doc)


@pytest.mark.parametrize("mtu", [1280, 9000])
def test_mtu_at_the_bounds_is_accepted(mtu: int) -> None:
    assert (MIN_MTU_BYTES, MAX_MTU_BYTES) == (1280, 9000)
    doc = make_config().to_json()
    doc["mtu"] = mtu
    assert verify_signed_config(sign_doc(doc), CONTROLLER.public, NET, M1.node_id, NOW).mtu_bytes == mtu


def _signed() -> bytes:
    return make_config().sign(CONTROLLER)


def _altered_body() -> bytes:
    signed = _signed()
    altered = signed.replace(b'"revision":3', b'"revision":9')
    assert altered != signed
    return altered


SIGNATURE_FAILURES = {
    "empty": lambda: b"",
    "signature-only": lambda: _signed()[:64],
    "unsigned-body": lambda: make_config().canonical_bytes(),
    "signed-by-another-key": lambda: make_config().sign(IMPOSTOR),
    "body-altered-after-signing": _altered_body,
    "signature-altered": lambda: bytes([_signed()[0] ^ 1]) + _signed()[1:],
}


@pytest.mark.parametrize("make_signed", list(SIGNATURE_FAILURES.values()), ids=list(SIGNATURE_FAILURES))
def test_config_without_a_valid_controller_signature_is_refused(make_signed) -> None:
    with pytest.raises(NetconfError) as excinfo:
        verify_signed_config(make_signed(), CONTROLLER.public, NET, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)


def test_config_for_another_network_is_refused() -> None:
    other = make_network_id(CONTROLLER.node_id, 0x43)
    with pytest.raises(NetconfError, match="another network") as excinfo:
        verify_signed_config(make_config().sign(CONTROLLER), CONTROLLER.public, other, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)


def test_config_issued_to_another_member_is_refused() -> None:
    with pytest.raises(NetconfError, match="another member") as excinfo:
        verify_signed_config(make_config(issued_to=M2).sign(CONTROLLER), CONTROLLER.public, NET, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_signed_body_that_is_not_a_config_object_is_refused(body: bytes) -> None:
    with pytest.raises(NetconfError) as excinfo:
        verify_signed_config(CONTROLLER.sign(body) + body, CONTROLLER.public, NET, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)


# -- endpoints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1.2.3.4", "x:1", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:-1", ":9993", "", "1.2.3.4:"])
def test_bad_endpoint_strings_raise_one_line_netconf_errors(text: str) -> None:
    with pytest.raises(NetconfError) as excinfo:
        parse_endpoint(text)
    assert_one_line_netconf_error(excinfo)
    assert repr(text) in str(excinfo.value)


@SETTINGS
@given(st.ip_addresses(), st.integers(1, 65535))
def test_endpoint_format_parse_round_trip(address, port: int) -> None:
    host = str(address)
    text = f"[{host}]:{port}" if address.version == 6 else f"{host}:{port}"
    assert parse_endpoint(text) == (host, port)
    assert ipaddress.ip_address(parse_endpoint(text)[0]) == address


# -- known defects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["revision", "mtu", "multicast_limit"])
def test_infinite_number_in_a_config_is_a_netconf_error(field: str) -> None:
    doc = make_config().to_json()
    body = json.dumps(doc).replace(f'"{field}": {json.dumps(doc[field])}', f'"{field}": 1e999').encode()
    assert body != json.dumps(doc).encode()
    with pytest.raises(NetconfError):
        verify_signed_config(CONTROLLER.sign(body) + body, CONTROLLER.public, NET, M1.node_id, NOW)


def test_negative_multicast_limit_is_refused() -> None:
    doc = make_config().to_json()
    doc["multicast_limit"] = -1
    with pytest.raises(NetconfError):
        NetworkConfig.from_json(doc)


def test_an_expired_config_is_refused_and_one_without_expiry_never_expires() -> None:
    config = make_config()
    with pytest.raises(NetconfError, match="expired"):
        verify_signed_config(config.sign(CONTROLLER), CONTROLLER.public, NET, M1.node_id, config.expires_s + 2 * 3600)
    # Within the clock slack it is still good.
    assert verify_signed_config(config.sign(CONTROLLER), CONTROLLER.public, NET, M1.node_id, config.expires_s + 60)
    assert not make_config(expires_s=0.0).expired(1e12)


# -- flow rules and tags (issue 13) ----------------------------------------------------------------------
RULES_TEXT = "# guests\ndrop tcp dport 22 src-tag guest\naccept\n"


def make_ruled_config(**changes) -> NetworkConfig:
    base = make_config()
    tagged = (replace(base.members[0], tags=frozenset({"guest", "wifi"})), base.members[1])
    return base.with_changes(members=tagged, rules=parse_rules(RULES_TEXT), **changes)


def test_rules_and_tags_travel_in_the_signed_config() -> None:
    config = make_ruled_config()
    doc = config.to_json()
    assert doc["rules"] == RULES_TEXT  # as the operator wrote it: line numbers in logs match the file
    assert doc["members"][0]["tags"] == ["guest", "wifi"]
    back = verify_signed_config(config.sign(CONTROLLER), CONTROLLER.public, NET, M1.node_id, NOW)
    assert back == config
    assert back.rules.rules[0].line == 2
    assert back.member(M1.node_id).tags == {"guest", "wifi"}


def test_a_config_without_rules_or_tags_means_none_and_looks_as_before() -> None:
    doc = make_config().to_json()
    assert "rules" not in doc and all("tags" not in m for m in doc["members"])
    config = NetworkConfig.from_json(doc)
    assert not config.rules and config.rules.rules == ()
    assert all(m.tags == frozenset() for m in config.members)


def test_a_signed_config_with_a_bad_rule_is_refused_naming_the_line() -> None:
    doc = make_ruled_config().to_json()
    doc["rules"] = "accept\ndrop tcp dprt 22\n"
    with pytest.raises(NetconfError, match="rules line 2: unknown condition 'dprt'") as excinfo:
        verify_signed_config(sign_doc(doc), CONTROLLER.public, NET, M1.node_id, NOW)
    assert_one_line_netconf_error(excinfo)


@pytest.mark.parametrize("tags", ["guest", ["-guest"], [""], [7], ["x" * 65], ["t"] * 65, ["not"]])
def test_bad_member_tags_are_refused(tags) -> None:
    doc = make_config().to_json()
    doc["members"][0]["tags"] = tags
    with pytest.raises(NetconfError) as excinfo:
        NetworkConfig.from_json(doc)
    assert_one_line_netconf_error(excinfo)


@pytest.mark.parametrize("rules", [7, ["drop"], "drop " + "x" * 70000])
def test_rules_that_are_not_rule_text_are_refused(rules) -> None:
    doc = make_config().to_json()
    doc["rules"] = rules
    with pytest.raises(NetconfError) as excinfo:
        NetworkConfig.from_json(doc)
    assert_one_line_netconf_error(excinfo)


# -- routes and DNS domain (issue 14) ---------------------------------------------------------------------
def test_routes_and_dns_domain_round_trip_and_a_config_without_them_still_parses() -> None:
    config = make_config(dns_domain="corp.example")
    doc = config.to_json()
    assert doc["routes"] == [{"target": "10.147.17.0/24", "via": None}, {"target": "198.19.200.0/24", "via": "10.147.17.2"}]
    assert NetworkConfig.from_json(doc) == config
    old = make_config(routes=()).to_json()  # as a controller before issue 14 signed them: no dns_domain
    old.pop("routes")
    parsed = NetworkConfig.from_json(old)
    assert parsed.routes == () and parsed.dns_domain == "" and parsed.effective_dns_domain == "lab.l2mesh"


@pytest.mark.parametrize(
    "change",
    [
        {"routes": [{"target": "198.19.200.0/24", "via": "fd00::1"}]},
        {"routes": [{"via": "10.147.17.2"}]},
        {"routes": "10.147.17.0/24"},
        {"dns_domain": "not a domain"},
    ],
)
def test_bad_routes_or_domain_refuse_the_config_in_one_line(change: dict) -> None:
    doc = {**make_config().to_json(), **change}
    with pytest.raises(NetconfError) as excinfo:
        NetworkConfig.from_json(doc)
    assert_one_line_netconf_error(excinfo)
