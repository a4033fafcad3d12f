"""Flow rules through whole node cores: compiled from the netconf, enforced on both ends, reported once (issue 13)."""

from __future__ import annotations

from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.events import FlowRuleMatched
from l2mesh.rules import NO_RULES, RuleSet, parse_rules
from l2mesh.switch.flow_rules import INBOUND, OUTBOUND
from tests.unit.test_core import NET, Member, Mesh, udp_frame

GUEST_RULES = parse_rules("# no discard service for guests\ndrop udp dport 9 src-tag guest\naccept\n")


def ruled_config(mesh: Mesh, member: Member, rules: RuleSet, revision: int = 2, guests: tuple[Member, ...] = ()) -> NetworkConfig:
    guest_ids = {g.node_id for g in guests}
    return NetworkConfig(
        network_id=NET,
        revision=revision,
        issued_to=member.node_id,
        members=tuple(
            MemberConfig(
                m.node_id, m.identity.public, endpoints=(m.endpoint,),
                tags=frozenset({"guest"}) if m.node_id in guest_ids else frozenset(),
            )
            for m in mesh.members
        ),
        rules=rules,
    )


def configure(mesh: Mesh, rules: RuleSet, revision: int = 2, guests: tuple[Member, ...] = (), only: tuple[Member, ...] | None = None) -> None:
    for member in only or mesh.members:
        assert member.core.apply_netconf(ruled_config(mesh, member, rules, revision, guests))


def reported(member: Member, now: float) -> list[FlowRuleMatched]:
    member.core.tick(now)
    return [e for e in member.core.events if isinstance(e, FlowRuleMatched)]


def test_the_guest_member_does_not_even_send_what_its_rules_drop() -> None:
    mesh = Mesh(2)
    guest, server = mesh.members
    configure(mesh, GUEST_RULES, guests=(guest,))
    guest.core.frame_from_tap(NET, udp_frame(guest, server.mac()), 0.0)
    mesh.deliver(0.0)
    assert not guest.transmit.datagrams and not mesh.log  # not a handshake, not a byte
    assert server.frames() == []
    assert reported(guest, 0.1) == [FlowRuleMatched(NET, 2, "drop udp dport 9 src-tag guest", "drop", OUTBOUND, server.node_id)]
    # The other way round nothing is dropped.
    server.core.frame_from_tap(NET, udp_frame(server, guest.mac()), 0.2)
    mesh.deliver(0.2)
    assert len(guest.frames()) == 1


def test_a_modified_sender_without_rules_is_stopped_by_the_receiver_and_logged_once() -> None:
    mesh = Mesh(2)
    guest, server = mesh.members
    configure(mesh, NO_RULES, guests=(guest,), only=(guest,))  # the guest's node ignores the rules
    configure(mesh, GUEST_RULES, guests=(guest,), only=(server,))
    for step in range(3):
        guest.core.frame_from_tap(NET, udp_frame(guest, server.mac()), step * 0.1)
        mesh.deliver(step * 0.1)
    assert server.frames() == []
    assert server.core.networks[NET].switch.counters()["rules"]["drops"] == 3
    assert reported(server, 1.0) == [FlowRuleMatched(NET, 2, "drop udp dport 9 src-tag guest", "drop", INBOUND, guest.node_id)]
    server.core.events.clear()
    assert reported(server, 2.0) == []  # once per cause


def test_a_new_config_changes_the_rules_for_the_very_next_frame() -> None:
    mesh = Mesh(2)
    guest, server = mesh.members
    configure(mesh, GUEST_RULES, guests=(guest,))
    guest.core.frame_from_tap(NET, udp_frame(guest, server.mac()), 0.0)
    mesh.deliver(0.0)
    assert server.frames() == []
    configure(mesh, parse_rules("drop udp dport 10\n"), revision=3, guests=(guest,))
    guest.core.frame_from_tap(NET, udp_frame(guest, server.mac()), 0.1)
    mesh.deliver(0.1)
    assert len(server.frames()) == 1
    # Untagging the guest (same rules) lets it through too.
    configure(mesh, GUEST_RULES, revision=4, guests=())
    guest.core.frame_from_tap(NET, udp_frame(guest, server.mac()), 0.2)
    mesh.deliver(0.2)
    assert len(server.frames()) == 2


def test_rules_are_compiled_once_per_config_not_per_frame() -> None:
    mesh = Mesh(2)
    guest, server = mesh.members
    configure(mesh, GUEST_RULES, guests=(guest,))
    compiled = server.core.networks[NET].switch.rules.compiled  # type: ignore[union-attr]
    for step in range(3):
        server.core.frame_from_tap(NET, udp_frame(server, guest.mac()), step * 0.1)
        mesh.deliver(step * 0.1)
    assert server.core.networks[NET].switch.rules.compiled is compiled  # type: ignore[union-attr]
    # A refresh that changes nothing but timestamps keeps it too.
    assert server.core.apply_netconf(ruled_config(mesh, server, GUEST_RULES, 2, (guest,)).with_changes(timestamp_s=5.0))
    assert server.core.networks[NET].switch.rules.compiled is compiled  # type: ignore[union-attr]
