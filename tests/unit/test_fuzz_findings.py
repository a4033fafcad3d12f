"""Defects the fuzzer (tests/fuzz) found, each held fixed by the input that showed it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.netconf import MAX_REVISION, NetconfError, NetworkConfig
from l2mesh.netconf_delta import ConfigDelta
from tests.fuzz.targets_cores import NodeNetconf
from tests.fuzz.worlds import MeshWorld

CONTROLLER = Identity.generate()
NETWORK_ID = make_network_id(CONTROLLER.node_id, 1)


@pytest.fixture
def netconf_target() -> Iterator[NodeNetconf]:
    target = NodeNetconf()
    target.setup()
    yield target
    target.close()


@pytest.mark.parametrize("revision", [MAX_REVISION + 1, 2**70, -1])
def test_a_config_revision_the_wire_cannot_carry_is_refused(revision: int) -> None:
    doc = NetworkConfig(NETWORK_ID, 1, CONTROLLER.node_id).to_json() | {"revision": revision}
    with pytest.raises(NetconfError, match="revision must be an integer within"):
        NetworkConfig.from_json(doc)


def test_the_largest_revision_the_wire_carries_is_taken() -> None:
    doc = NetworkConfig(NETWORK_ID, 1, CONTROLLER.node_id).to_json() | {"revision": MAX_REVISION}
    assert NetworkConfig.from_json(doc).revision == MAX_REVISION


def test_a_delta_to_a_revision_the_wire_cannot_carry_is_refused() -> None:
    doc = ConfigDelta(NETWORK_ID, 4, 5, 0.0, 0.0, bytes(32)).to_json() | {"to_revision": MAX_REVISION + 1}
    with pytest.raises(NetconfError, match="to_revision must be an integer within"):
        ConfigDelta.from_json(doc)


def test_a_signed_config_with_revision_2_to_the_64_leaves_the_node_running(netconf_target: NodeNetconf) -> None:
    """Found by node.netconf: the node took the config, and its next request for a newer one raised out of tick()."""
    mesh = netconf_target.mesh
    assert isinstance(mesh, MeshWorld)
    held = mesh.a.config()
    assert held is not None
    body = json.dumps(held.to_json() | {"revision": 2**64}).encode()
    assert netconf_target.run(body) == "netconf_rejected"
    assert mesh.a.config() == held
    for second in range(1, 700, 7):  # past the refresh interval: the node asks the controller again
        mesh.a.tick(mesh.now + second)
