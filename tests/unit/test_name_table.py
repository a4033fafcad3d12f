"""l2mesh.node.name_table and l2mesh.dns_names: members' names in the network's DNS domain, and the answers."""

from __future__ import annotations

import pytest

from l2mesh.dns_names import DnsNameError, default_dns_domain, host_label, normalize_domain
from l2mesh.identity import Identity
from l2mesh.ids import format_node_id, make_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.name_table import NameTable, Rcode

N1, N2, BRIDGE = (Identity.generate().public for _ in range(3))
NET = make_network_id(0x0A1B2C3D4E, 1)


def config(**changes: object) -> NetworkConfig:
    members = (
        MemberConfig(N1.node_id, N1, ips=("10.147.17.1/24",), name="n1"),
        MemberConfig(N2.node_id, N2, ips=("10.147.17.2/24", "fd00::2/64"), name="Build Server #2"),
        MemberConfig(BRIDGE.node_id, BRIDGE, bridge=True, name="bridge"),
    )
    return NetworkConfig(NET, revision=7, issued_to=N1.node_id, name="Lab", members=members).with_changes(**changes)


def test_a_member_answers_by_name_and_by_node_id_in_the_default_domain() -> None:
    table = NameTable.from_config(config())
    assert table.domain == "lab.l2mesh" and table.serial == 7
    answer = table.lookup("N1.Lab.L2mesh.", "A")
    assert (answer.rcode, answer.addresses) == (Rcode.NOERROR, ("10.147.17.1",))
    assert table.lookup(f"{format_node_id(N2.node_id)}.lab.l2mesh", "A").addresses == ("10.147.17.2",)
    assert table.lookup("build-server-2.lab.l2mesh", "AAAA").addresses == ("fd00::2",)
    assert table.lookup("build-server-2.lab.l2mesh", "ANY").addresses == ("10.147.17.2", "fd00::2")


def test_unknown_names_in_the_domain_are_nxdomain_and_others_are_refused() -> None:
    table = NameTable.from_config(config(dns_domain="corp.example"))
    assert table.lookup("n3.corp.example", "A").rcode is Rcode.NXDOMAIN
    assert table.lookup("www.n1.corp.example", "A").rcode is Rcode.NXDOMAIN  # nothing below a member
    assert table.lookup("n1.lab.l2mesh", "A").rcode is Rcode.REFUSED  # the default no longer applies
    assert table.lookup("example.org", "A").rcode is Rcode.REFUSED
    assert table.lookup("xcorp.example", "A").rcode is Rcode.REFUSED
    negative = table.lookup("n3.corp.example", "A")
    assert negative.soa and negative.addresses == ()


def test_a_name_without_that_kind_of_address_is_nodata_and_the_apex_exists() -> None:
    table = NameTable.from_config(config())
    nodata = table.lookup("n1.lab.l2mesh", "AAAA")
    assert (nodata.rcode, nodata.addresses, nodata.soa) == (Rcode.NOERROR, (), True)
    assert table.lookup("bridge.lab.l2mesh", "A").rcode is Rcode.NOERROR  # a bridge has no address, but its name exists
    assert table.lookup("n1.lab.l2mesh", "MX").rcode is Rcode.NOERROR
    apex = table.lookup("lab.l2mesh", "SOA")
    assert (apex.rcode, apex.soa) == (Rcode.NOERROR, True)


def test_members_sharing_a_name_answer_together_and_a_rename_follows_the_config() -> None:
    shared = config().with_changes(members=tuple(m if m.node_id != N2.node_id else MemberConfig(N2.node_id, N2, ips=("10.147.17.2/24",), name="n1")
                                                  for m in config().members))
    assert NameTable.from_config(shared).lookup("n1.lab.l2mesh", "A").addresses == ("10.147.17.1", "10.147.17.2")
    gone = config().with_changes(members=config().members[:1])
    assert NameTable.from_config(gone).lookup("build-server-2.lab.l2mesh", "A").rcode is Rcode.NXDOMAIN


def test_domains_are_checked_and_normalized() -> None:
    assert normalize_domain("Corp.Example.") == "corp.example"
    for bad in ("", "a..b", "-a.b", "a_b.c", "x" * 64 + ".b", "a.b" * 100, 5):
        with pytest.raises(DnsNameError):
            normalize_domain(bad)
    assert default_dns_domain("Lab", NET) == "lab.l2mesh"
    assert default_dns_domain("!!!", NET) == f"{NET:016x}.l2mesh"
    assert host_label("Build Server #2") == "build-server-2" and host_label("---") is None
    assert host_label("x" * 80) == "x" * 63
