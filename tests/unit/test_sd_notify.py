"""Readiness for systemd: the sd_notify helper against a real Unix datagram socket playing systemd, and the unit files."""

from __future__ import annotations

import configparser
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2mesh.edge.sd_notify import NOTIFY_SOCKET_ENV, notify_address, notify_ready, sd_notify

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def fake_systemd(address: str) -> socket.socket:
    """A datagram socket like systemd's notify socket: passes credentials, so the sender's pid can be checked."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


def receive(sock: socket.socket) -> tuple[bytes, int]:
    """(message, sender pid), as systemd reads them to apply NotifyAccess=main."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    pids = [UCRED.unpack(cdata[: UCRED.size])[0] for level, kind, cdata in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
    assert len(pids) == 1
    return data, pids[0]


@pytest.fixture
def systemd_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = fake_systemd(str(path))
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, str(path))
    yield sock
    sock.close()


def test_ready_reaches_a_path_socket_from_this_process_with_a_status_line(systemd_path: socket.socket) -> None:
    assert notify_ready("node 0123456789 on UDP 9993") is True
    assert receive(systemd_path) == (b"READY=1\nSTATUS=node 0123456789 on UDP 9993", os.getpid())


def test_ready_without_a_status_is_just_ready(systemd_path: socket.socket) -> None:
    assert notify_ready() is True
    assert systemd_path.recv(4096) == b"READY=1"


def test_ready_reaches_an_abstract_socket_named_with_an_at_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"l2mt-notify-{secrets.token_hex(6)}"
    sock = fake_systemd("\0" + name)
    try:
        monkeypatch.setenv(NOTIFY_SOCKET_ENV, "@" + name)
        assert notify_address() == "\0" + name
        assert notify_ready() is True
        assert receive(sock) == (b"READY=1", os.getpid())
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    assert notify_address() is None
    assert notify_ready() is False
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, "")
    assert notify_ready() is False


def test_a_socket_that_is_gone_or_unusable_is_logged_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert sd_notify("READY=1", {NOTIFY_SOCKET_ENV: str(tmp_path / "gone")}) is False
    assert sd_notify("READY=1", {NOTIFY_SOCKET_ENV: "vsock:2:1234"}) is False
    (tmp_path / "file").write_text("")
    assert sd_notify("READY=1", {NOTIFY_SOCKET_ENV: str(tmp_path / "file")}) is False
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 3


# -- the unit files ---------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.parametrize("unit", ["l2mesh.service", "l2mesh-ctl.service"])
def test_units_wait_for_readiness_from_the_main_process(unit: str) -> None:
    service = read_unit(UNITS / unit)["Service"]
    assert service["Type"] == "notify"
    # READY=1 comes from the main process (the daemon itself, no wrapper), systemd's default NotifyAccess=main.
    assert service.get("NotifyAccess", "main") == "main"


@pytest.mark.parametrize("unit", ["l2mesh.service", "l2mesh-ctl.service"])
def test_units_pass_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (package systemd)")
    # ExecStart must name an executable that exists: point it at this checkout's console scripts.
    scripts = Path(sys.executable).parent
    text = (UNITS / unit).read_text().replace("/usr/local/bin/", f"{scripts}/")
    copy = tmp_path / unit
    copy.write_text(text)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown keys and bad values are only warnings (exit 0): any line naming the unit fails the test.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
