"""The scale benchmark (benchmarks/scale.py) at 20 members, so it cannot rot: every phase finishes and reaches everyone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"
MEMBERS = 20


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_every_phase_reaches_every_member(scale: ModuleType, tmp_path: Path) -> None:
    row = scale.run_size(MEMBERS, 60.0, tmp_path)
    assert "stopped" not in row, row.get("stopped")
    storm, change, deauth = row["storm"], row["change"], row["deauth"]
    assert storm["ok"] == MEMBERS and storm["reached"] == MEMBERS  # all OK, all listing all 20
    assert 0 < storm["all_ok_s"] <= storm["serial_wall_s"]
    assert storm["controller_cpu_s"] > 0 and storm["controller_datagrams"] >= MEMBERS
    assert change["reached"] == MEMBERS and change["controller_datagrams"] >= MEMBERS
    assert 0 < change["push_wall_s"] <= change["deployed_s"]
    assert deauth["reached"] == MEMBERS - 1 and deauth["victim_denied_s"] is not None
    assert row["controller_online"] == MEMBERS
    assert 0 < row["controller_bytes_per_member"] < 1_000_000
    assert row["controller_drops"] == {}


def test_known_members_reconnect_when_the_storm_is_not_tried(scale: ModuleType, tmp_path: Path) -> None:
    row = scale.run_size(MEMBERS, 60.0, tmp_path, try_storm=False)
    assert "storm" not in row and row["storm_stopped"].startswith("not tried")
    assert row["reconnect"]["reached"] == MEMBERS and row["change"]["reached"] == MEMBERS
    assert row["deauth"]["reached"] == MEMBERS - 1 and row["controller_online"] == MEMBERS


def test_one_full_member_holds_the_network(scale: ModuleType, tmp_path: Path) -> None:
    full = scale.one_full_member(MEMBERS, tmp_path)
    assert full["listed"] == MEMBERS and full["peers_held"] == MEMBERS - 1
    assert 0 < full["bytes_per_idle_peer"] < 1_000_000
    assert full["member_apply_cpu_s"] > 0 and full["controller_push_bytes"] > 0


def test_a_phase_past_its_cap_is_recorded_not_raised(scale: ModuleType, tmp_path: Path) -> None:
    row = scale.run_size(MEMBERS, 0.001, tmp_path)
    assert row["stopped"].endswith("did not finish in 0.001 s")
    assert "did_not_finish_s" in row[row["stopped"].split()[0]]


def test_light_members_get_the_change_and_drop_the_deauthorized_one(scale: ModuleType, tmp_path: Path) -> None:
    row = scale.light_run(MEMBERS, 60.0, tmp_path)
    assert "stopped" not in row, row.get("stopped")
    assert row["first_member"]["listed"] == MEMBERS  # the shared start config, fetched and verified whole
    rejoin, change, deauth = row["rejoin"], row["change"], row["deauth"]
    assert rejoin["reached"] == MEMBERS - 1
    assert rejoin["controller_bytes"] < MEMBERS * 1000  # holding the current revision: "yours is current", no config
    assert change["reached"] == MEMBERS and change["controller_datagrams"] == MEMBERS  # one delta each
    assert 0 < change["push_wall_s"] <= change["deployed_s"]
    assert deauth["reached"] == MEMBERS - 1 and deauth["victim_denied_s"] is not None
    assert row["controller_online"] == MEMBERS and row["controller_drops"] == {}
    assert set(row["member_drops"]) <= {"ignored_AnnounceEndpoints"}


def test_two_instances_on_postgresql_share_changes_and_fail_over(scale: ModuleType, tmp_path: Path, pg_url: str,
                                                                 pg_server: Any) -> None:
    row = scale.two_instance_run(MEMBERS, pg_url, tmp_path, 60.0, pg_server.create_schema())
    assert "stopped" not in row, row.get("stopped")
    assert row["storm_one_instance"]["reached"] == MEMBERS and row["storm_one_instance"]["controller_cpu_s"] > 0
    assert row["storm"]["reached"] == MEMBERS
    assert row["storm"]["controller_cpu_s"]["a"] > 0 and row["storm"]["controller_cpu_s"]["b"] > 0
    assert row["across"]["reached"] == MEMBERS // 2  # A's members got what was committed through B
    failover = row["failover"]
    assert failover["reached"] == MEMBERS // 2 and failover["lost_change"] is False
    assert failover["failover_fake_s"]["max"] < scale.TARGET_FAILOVER_S
    assert failover["b_online"] == MEMBERS


def test_optional_parts_can_be_left_out(scale: ModuleType, tmp_path: Path) -> None:
    args = scale.parse_args(["--light", "0", "--light-storm", "0", "--pair-members", "0"])
    assert args.light == 0 and scale.two_instances(args, tmp_path) == {"skipped": "--pair-members 0"}


def test_a_cold_storm_of_light_members_is_answered_and_pushed(scale: ModuleType, tmp_path: Path) -> None:
    storm = scale.light_storm(MEMBERS, 60.0, tmp_path)["storm"]
    assert storm["reached"] == MEMBERS and storm["revision"] >= MEMBERS  # one revision per join at least
    assert MEMBERS <= storm["whole_configs"] <= 3 * MEMBERS  # coalesced: no whole config per member per join
    assert 0 < storm["controller_cpu_s"] <= storm["deployed_s"]
