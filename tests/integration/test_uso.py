"""UDP segmentation offload against the real kernel: coalesced UDP_L4 frames written to a TAP arrive as the very
datagrams, locally and forwarded with checksums the kernel completed; a local segmented send reaches us as one
super-frame that split_uso cuts back (tests/integration/uso_probe.py does the work inside a fresh namespace)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from l2mesh.lab import Lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("l2mt-") as made:
        yield made


def test_coalesced_udp_frames_reach_sockets_and_wire_as_the_datagrams_sent(lab: Lab) -> None:
    namespace = lab.add_namespace("uso")
    probe = [sys.executable, "-m", "tests.integration.uso_probe"]
    done = lab.run_in(namespace, probe, timeout_s=30, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["uso"]:
        pytest.skip("this kernel has no TUN_F_USO4/6 (before 6.2)")
    assert result["problems"] == []
    assert result["coalesced"] == {"uso_writes": 8, "uso_datagrams": 168}
    assert result["counts"] == {"v4_super_frames_read": 1, "v6_super_frames_read": 1}
