"""The host set-up's pieces that need no root: sysctls held and put back, join flags kept across restarts,
the exit node's masquerade, and route/domain input checked by the CLIs in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from l2mesh.cli import ctl, node
from l2mesh.edge.node import resolved
from l2mesh.edge.node.forwarding import ForwardingSetup, _masquerade
from l2mesh.edge.node.state_dir import JoinedNetwork, NodeState
from l2mesh.edge.node.sysctl import KernelSettings
from l2mesh.edge.statefile import atomic_write_json
from l2mesh.node.join_options import JoinOptions


def proc_sys(tmp_path: Path, **values: str) -> KernelSettings:
    for key, value in values.items():
        path = tmp_path / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return KernelSettings(tmp_path)


def test_a_sysctl_is_put_back_when_its_last_owner_lets_go(tmp_path: Path) -> None:
    settings = proc_sys(tmp_path, **{"net.ipv4.ip_forward": "0"})
    forward = tmp_path / "net/ipv4/ip_forward"
    settings.hold("net/ipv4/ip_forward", "1", "exit")
    settings.hold("net/ipv4/ip_forward", "1", "router")
    assert forward.read_text().strip() == "1"
    settings.release("exit")
    assert forward.read_text().strip() == "1"  # the subnet router still forwards
    settings.release("router")
    assert forward.read_text().strip() == "0"


def test_a_sysctl_that_was_on_already_or_changed_by_someone_else_is_left_alone(tmp_path: Path) -> None:
    settings = proc_sys(tmp_path, **{"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.src_valid_mark": "0"})
    settings.hold("net/ipv4/ip_forward", "1", "exit")
    settings.release("exit")
    assert (tmp_path / "net/ipv4/ip_forward").read_text().strip() == "1"
    settings.hold("net/ipv4/conf/all/src_valid_mark", "1", "default-route")
    (tmp_path / "net/ipv4/conf/all/src_valid_mark").write_text("2\n")  # an admin's own change
    settings.release("default-route")
    assert (tmp_path / "net/ipv4/conf/all/src_valid_mark").read_text().strip() == "2"


def test_join_flags_survive_a_restart_and_an_older_state_file_reads_with_defaults(tmp_path: Path) -> None:
    state = NodeState(tmp_path)
    joined = {0x0A1B2C3D4E000001: JoinedNetwork(("198.18.1.2", 9994), JoinOptions(allow_default=True, exit_node=True))}
    state.save_joined(joined)
    assert NodeState(tmp_path).load_joined() == joined
    atomic_write_json(tmp_path / "networks.json", {"networks": {"0a1b2c3d4e000001": {"controller": "198.18.1.2:9994"}}})
    assert NodeState(tmp_path).load_joined() == {0x0A1B2C3D4E000001: JoinedNetwork(("198.18.1.2", 9994), JoinOptions())}


def test_the_exit_node_masquerades_the_overlay_subnets_out_of_every_other_interface() -> None:
    ruleset = _masquerade(ForwardingSetup("l2m0a1b2c3d", ("10.147.17.0/24", "fd00::/64"), JoinOptions(exit_node=True)))
    assert 'ip saddr { 10.147.17.0/24 } oifname != "l2m0a1b2c3d" masquerade' in ruleset
    assert 'ip6 saddr { fd00::/64 } oifname != "l2m0a1b2c3d" masquerade' in ruleset
    assert "type nat hook postrouting priority srcnat" in ruleset


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["network", "update", "0a1b2c3d4e000001", "--route", "198.19.200.0/33"], "invalid route '198.19.200.0/33'"),
        (["network", "update", "0a1b2c3d4e000001", "--route", "198.19.200.0/24@lan"], "invalid route gateway 'lan'"),
        (["network", "update", "0a1b2c3d4e000001", "--no-route", "nonsense"], "invalid route 'nonsense'"),
        (["network", "update", "0a1b2c3d4e000001", "--dns-domain", "under_score.example"], "invalid DNS domain"),
    ],
)
def test_bad_routes_and_domains_end_in_one_line_before_anything_is_sent(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ctl.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_update_adds_and_removes_routes_while_create_sets_them() -> None:
    parser = ctl.build_parser()
    update = parser.parse_args(["network", "update", "0a1b2c3d4e000001", "--route", "198.19.200.7/24@10.147.17.3",
                                "--no-route", "0.0.0.0/0", "--dns-domain", "Corp.Example"])
    assert ctl._network_fields(update) == {"add_routes": ["198.19.200.0/24@10.147.17.3"], "remove_routes": ["0.0.0.0/0"],
                                           "dns_domain": "corp.example"}
    create = parser.parse_args(["network", "create", "lab", "--pool", "10.147.17.0/24", "--route", "10.147.17.0/24"])
    assert ctl._network_fields(create)["routes"] == ["10.147.17.0/24"]
    join = node.build_parser().parse_args(["join", "0a1b2c3d4e000001", "--controller", "198.18.1.2:9994", "--allow-default",
                                           "--no-managed-routes", "--exit-node"])
    assert (join.allow_default, join.no_managed_routes, join.exit_node, join.subnet_router) == (True, True, True, False)


def test_the_daemon_module_does_not_load_dnspython_until_a_network_needs_it() -> None:
    probe = "import sys, l2mesh.edge.node.daemon\nprint(sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))\n"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_daemon_module_loads_neither_pyroute2_nor_dpkt_nor_rich() -> None:
    """Memory (issue 17): pyroute2, dpkt and rich cost an idle daemon about 16 MiB together; pyroute2 is
    loaded only by a network with managed routes to change. (trio stays: it runs the control plane.)"""
    probe = ("import sys, l2mesh.cli.node, l2mesh.edge.node.daemon\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyroute2', 'dpkt', 'rich', 'dns'}))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_resolved_gets_the_members_address_and_a_routing_domain_for_the_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd-resolved does not run on the test machines: a stand-in resolvectl records what it is asked."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "resolvectl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr(resolved, "RESOLVED_RUNTIME_DIR", tmp_path)
    assert resolved.resolved_problem() == "systemd-resolved is not running"
    (tmp_path / "io.systemd.Resolve").touch()
    # Whether it may be used then depends on the namespace this test runs in (a sandbox may hide PID 1's).
    assert resolved.resolved_problem() in (
        None, "this daemon runs in another network namespace than systemd-resolved",
        "cannot tell whether systemd-resolved shares this daemon's network namespace",
    )
    assert resolved.set_link_dns("l2m0a1b2c3d", ["10.147.17.1"], "lab.l2mesh") is None
    resolved.revert_link("l2m0a1b2c3d")
    assert calls.read_text().splitlines() == [
        "dns l2m0a1b2c3d 10.147.17.1", "domain l2m0a1b2c3d ~lab.l2mesh", "default-route l2m0a1b2c3d false", "revert l2m0a1b2c3d",
    ]
    fake.write_text("#!/bin/sh\necho 'Failed to set DNS configuration: Link l2m0a1b2c3d not known' >&2\nexit 1\n")
    assert resolved.set_link_dns("l2m0a1b2c3d", ["10.147.17.1"], "lab.l2mesh") == (
        "resolvectl dns: Failed to set DNS configuration: Link l2m0a1b2c3d not known"
    )
