"""l2mesh.controller.seen: last-seen times noted per packet, written as one batch per interval."""

from __future__ import annotations


from l2mesh.controller import admin
from l2mesh.controller.model import Network
from l2mesh.controller.seen import SEEN_FLUSH_INTERVAL_S, SeenTimes, SeenTracker
from l2mesh.controller.storage import Storage
from l2mesh.identity import Identity

A, B = 0x1000000001, 0x1000000002


def test_times_are_due_once_per_interval_for_the_members_heard_since_the_last_batch() -> None:
    tracker = SeenTracker()
    walls = {A: 500.0}
    assert tracker.due(0.0, walls.get) is None  # nothing heard yet
    tracker.heard(7, A)
    tracker.heard(8, A)
    tracker.heard(7, B)  # no session any more: no time to write
    assert tracker.due(SEEN_FLUSH_INTERVAL_S - 0.1, walls.get) is None
    assert tracker.due(SEEN_FLUSH_INTERVAL_S, walls.get) == SeenTimes(((7, A, 500.0), (8, A, 500.0)))
    tracker.heard(7, A)
    assert tracker.due(SEEN_FLUSH_INTERVAL_S + 1.0, walls.get) is None
    assert tracker.due(2 * SEEN_FLUSH_INTERVAL_S, walls.get) == SeenTimes(((7, A, 500.0),))
    assert tracker.due(3 * SEEN_FLUSH_INTERVAL_S, walls.get) is None


def test_a_batch_writes_last_seen_only_and_reports_it_for_the_directory(storage: Storage) -> None:
    network = admin.create_network(storage, Identity.generate().node_id, {"name": "lab"}).answer
    assert isinstance(network, Network)
    admin.update_member(storage, network.network_id, A, {"authorized": True, "name": "a"}, 1.0)
    rows = ((network.network_id, A, 1234.5), (network.network_id, B, 99.0))
    change = SeenTimes(rows).commit(storage)
    assert change.seen == rows and change.push == ()
    member = storage.get_member(network.network_id, A)
    assert (member.last_seen_s, member.authorized, member.name) == (1234.5, True, "a")
    assert storage.find_member(network.network_id, B) is None
    assert SeenTimes(rows).failed().failed
