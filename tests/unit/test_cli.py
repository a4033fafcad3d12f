"""CLI plumbing that every command relies on: one-line errors, TAP names."""

from __future__ import annotations

import pytest

from l2mesh.cli.common import run_main
from l2mesh.errors import L2meshError
from l2mesh.edge.node.tap import tap_name_for


def test_an_error_wrapped_in_an_exception_group_still_ends_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        raise BaseExceptionGroup("nursery", [L2meshError("another l2mesh daemon already uses /x")])

    with pytest.raises(SystemExit) as exit_info:
        run_main(body)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already uses /x" in err and "Traceback" not in err


def test_two_networks_of_one_controller_get_different_tap_names_within_the_kernel_limit() -> None:
    first, second = 0x8056C2E2AB000001, 0x8056C2E2AB000002
    name = tap_name_for(first)
    assert name == "l2m8056c2e2"
    other = tap_name_for(second, {name})
    assert other != name and other.startswith("l2m") and len(other) <= 15


def test_node_cli_loads_neither_trio_nor_the_daemon_stack_for_a_status_query() -> None:
    """`l2mesh status` only asks the control socket: importing its CLI must not load trio (the
    control socket's server side) or anything the daemon alone needs."""
    import subprocess
    import sys

    probe = (
        "import sys, l2mesh.cli.node\n"
        "heavy = sorted(m for m in ('trio', 'pyroute2', 'pytun', 'hypercorn', 'l2mesh.edge.node.daemon') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
