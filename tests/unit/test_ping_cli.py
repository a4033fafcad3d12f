"""`l2mesh ping` and `l2mesh netcheck` on bad input: one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from l2mesh.cli.node import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return int(exit_info.value.code or 0), err


def test_ping_without_a_daemon_fails_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2MESH_DAEMON_WAIT_S", "0")
    code, err = run_cli(capsys, "ping", "0123456789", "--state-dir", str(tmp_path))
    assert code == 1 and "no l2mesh daemon is running" in err


@pytest.mark.parametrize("argv", [["--count", "0"], ["--count", "x"], ["--interval", "-1"], ["--timeout", "nan"]])
def test_ping_refuses_bad_counts_and_times(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> None:
    code, err = run_cli(capsys, "ping", "0123456789", "--state-dir", str(tmp_path), *argv)
    assert code == 2 and argv[0] in err


def test_netcheck_with_nothing_to_ask_says_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L2MESH_ROOTS", raising=False)
    code, err = run_cli(capsys, "netcheck", "--state-dir", str(tmp_path))
    assert code == 1 and "nothing to ask" in err


@pytest.mark.parametrize("argv, message", [
    (["--controller", "198.18.0.1:9994"], "give its id"),
    (["--root", "nonsense"], "invalid root"),
    (["--root", "0123456789@host.invalid:9993"], "cannot resolve root host"),
])
def test_netcheck_refuses_servers_it_cannot_ask(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                argv: list[str], message: str) -> None:
    code, err = run_cli(capsys, "netcheck", "--state-dir", str(tmp_path), *argv)
    assert code == 1 and message in err
