"""The CLI's control-socket client: it waits a few seconds for a daemon that is starting, then fails in one line."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2mesh.cli.node import main
from l2mesh.edge.node.control_client import (
    DAEMON_WAIT_ENV,
    DEFAULT_DAEMON_WAIT_S,
    ControlError,
    call_daemon,
    control_path,
    daemon_wait_s,
)


class LateDaemon:
    """A fake daemon that binds the control socket after delay_s (replacing a stale one) and answers one request."""

    def __init__(self, state_dir: Path, delay_s: float, result: Any) -> None:
        self.path = control_path(state_dir)
        self.delay_s = delay_s
        self.result = result
        self.requests: list[dict[str, Any]] = []
        self.listening_at_s: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LateDaemon":
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(10)

    def _run(self) -> None:
        time.sleep(self.delay_s)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.path.exists():
                self.path.unlink()
            server.bind(str(self.path))
            server.listen(1)
            self.listening_at_s = time.monotonic()
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                line = conn.makefile("rb").readline()
                self.requests.append(json.loads(line))
                conn.sendall((json.dumps({"ok": True, "result": self.result}) + "\n").encode())
        finally:
            server.close()


@pytest.fixture
def late_daemons() -> Iterator[list[LateDaemon]]:
    started: list[LateDaemon] = []
    yield started
    for daemon in started:
        daemon.join()


def test_a_daemon_whose_socket_appears_late_is_waited_for_and_answers(tmp_path: Path, late_daemons: list[LateDaemon]) -> None:
    daemon = LateDaemon(tmp_path, 0.4, {"id": "0123456789"})
    late_daemons.append(daemon.start())
    notices: list[str] = []
    started_s = time.monotonic()
    result = call_daemon(tmp_path, "status", wait_s=5.0, notice=notices.append)
    assert result == {"id": "0123456789"}
    assert daemon.requests == [{"command": "status"}]
    assert daemon.listening_at_s is not None and daemon.listening_at_s - started_s >= 0.3  # it really was not there yet
    assert len(notices) == 1 and "waiting up to 5 s" in notices[0] and str(tmp_path) in notices[0]


def test_a_stale_socket_left_by_a_dead_daemon_is_waited_past_until_the_new_one_listens(
    tmp_path: Path, late_daemons: list[LateDaemon]
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(control_path(tmp_path)))
    stale.close()  # the file stays; connecting to it is refused
    late_daemons.append(LateDaemon(tmp_path, 0.3, ["net"]).start())
    assert call_daemon(tmp_path, "networks", wait_s=5.0, notice=lambda _: None) == ["net"]


def test_with_no_daemon_the_wait_ends_in_todays_one_line_error_after_one_notice(tmp_path: Path) -> None:
    notices: list[str] = []
    started_s = time.monotonic()
    with pytest.raises(ControlError, match=r"^no l2mesh daemon is running for .* \(start it with: l2mesh daemon --state-dir .*\)$"):
        call_daemon(tmp_path, "status", wait_s=0.3, notice=notices.append)
    assert 0.3 <= time.monotonic() - started_s < 3.0
    assert len(notices) == 1


def test_without_a_wait_there_is_no_notice_and_no_delay(tmp_path: Path) -> None:
    notices: list[str] = []
    started_s = time.monotonic()
    with pytest.raises(ControlError, match="no l2mesh daemon is running"):
        call_daemon(tmp_path / "missing", "status", notice=notices.append)
    assert time.monotonic() - started_s < 0.5 and notices == []


def test_a_state_dir_that_is_a_file_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ControlError, match="is not a directory"):
        call_daemon(tmp_path / "file", "status", wait_s=5.0)


def test_the_wait_is_five_seconds_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAEMON_WAIT_ENV, raising=False)
    assert daemon_wait_s() == DEFAULT_DAEMON_WAIT_S == 5.0
    monkeypatch.setenv(DAEMON_WAIT_ENV, "0")
    assert daemon_wait_s() == 0.0
    monkeypatch.setenv(DAEMON_WAIT_ENV, " 1.5 ")
    assert daemon_wait_s() == 1.5
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv(DAEMON_WAIT_ENV, bad)
        with pytest.raises(ControlError, match=f"invalid {DAEMON_WAIT_ENV}="):
            daemon_wait_s()


def _run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


def test_cli_join_right_after_the_daemon_starts_waits_for_it(
    tmp_path: Path, late_daemons: list[LateDaemon], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DAEMON_WAIT_ENV, raising=False)
    daemon = LateDaemon(tmp_path, 0.3, {"id": "8056c2e21c000001", "controller": "198.18.1.2:9994", "status": "REQUESTING"})
    late_daemons.append(daemon.start())
    code = _run_cli(["join", "8056c2e21c000001", "--controller", "198.18.1.2:9994", "--state-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and "200 join OK 8056c2e21c000001" in out
    assert err.count("waiting up to 5 s for the l2mesh daemon") == 1 and err.count("\n") == 1
    default_flags = {"allow_default": False, "managed_routes": True, "exit_node": False, "subnet_router": False}
    assert daemon.requests == [
        {"command": "join", "network_id": "8056c2e21c000001", "controller": "198.18.1.2:9994", "options": default_flags}
    ]


@pytest.mark.parametrize("command", ["status", "networks", "peers", "macs"])
def test_cli_commands_without_a_daemon_say_they_wait_once_then_fail_in_one_line(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DAEMON_WAIT_ENV, "0.2")
    assert _run_cli([command, "--state-dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "Traceback" not in "".join(lines)
    assert "waiting up to 0.2 s" in lines[0]
    assert ": error: no l2mesh daemon is running for " in lines[1]


def test_cli_with_a_bad_wait_in_the_environment_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DAEMON_WAIT_ENV, "soon")
    assert _run_cli(["status", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid L2MESH_DAEMON_WAIT_S='soon'" in err


def test_error_lines_quoting_user_input_that_looks_like_markup_stay_one_intact_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DAEMON_WAIT_ENV, "0")
    odd = "/tmp/l2mt-[/b]-[bold]x"
    assert _run_cli(["status", "--state-dir", odd]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"no l2mesh daemon is running for {odd} (start it with: l2mesh daemon --state-dir {odd})" in err
