"""The async edges that need no root: the daemon's control socket (a trio server and its blocking CLI client,
on a real Unix socket) and ReactorEdge.call(), which trio code uses to reach the reactor thread.

pytest-trio runs the async tests (trio_mode in pyproject); the one about a client that never finishes its
line uses trio's MockClock (autojump), so the 10 s timeout passes in no real time.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from l2mesh.edge.node.control_client import CLIENT_TIMEOUT_S, ControlError, call_daemon, control_path
from l2mesh.edge.node.control_server import serve_control
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.reactor_edge import ReactorEdge
from l2mesh.edge.udp import DatagramSender
from l2mesh.errors import L2meshError


@pytest.fixture
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A short directory name: a Unix socket path must fit in 108 bytes, and tmp_path embeds the test's name.
    return tmp_path_factory.mktemp("state")


class Daemon:
    """What the daemon's handler does, reduced to what these tests need: it answers, or fails in one line."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        if request["command"] == "status":
            return {"online": True, "networks": 2, "asked": request}
        if request["command"] == "join":
            raise L2meshError(f"invalid network id {request['network']!r}: expected 16 hex digits")
        raise L2meshError(f"unknown command {request['command']!r}")


@pytest.fixture
async def daemon(state_dir: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, state_dir, daemon.handle)
        yield daemon
        nursery.cancel_scope.cancel()
    assert not control_path(state_dir).exists()  # the server removes its socket when it stops


async def ask(state_dir: Path, command: str, **arguments: Any) -> Any:
    """The CLI's blocking client, on a thread, as `l2mesh status` would call it."""
    return await trio.to_thread.run_sync(lambda: call_daemon(state_dir, command, **arguments))


async def raw_exchange(state_dir: Path, line: bytes) -> dict[str, Any]:
    """Send these bytes as a client would and read the one answer line."""
    stream = await trio.open_unix_socket(str(control_path(state_dir)))
    async with stream:
        await stream.send_all(line)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.count(b"\n") == 1, answer
    return json.loads(answer)


async def test_a_control_request_gets_its_answer_on_one_line(state_dir: Path, daemon: Daemon) -> None:
    path = control_path(state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # only the owner may steer the daemon
    result = await ask(state_dir, "status", verbose=True)
    assert result == {"online": True, "networks": 2, "asked": {"command": "status", "verbose": True}}
    assert daemon.requests == [{"command": "status", "verbose": True}]


async def test_bad_requests_get_an_error_line_and_the_server_keeps_serving(state_dir: Path, daemon: Daemon) -> None:
    not_json = await raw_exchange(state_dir, b"this is not json\n")
    assert not_json["ok"] is False and not_json["error"].startswith("bad control request: ")
    no_command = await raw_exchange(state_dir, b'{"command": 5}\n')
    assert no_command == {"ok": False, "error": "bad control request: request must be an object with a command"}
    not_an_object = await raw_exchange(state_dir, b'["status"]\n')
    assert not_an_object["ok"] is False
    assert daemon.requests == []  # none of them reached the handler
    assert await ask(state_dir, "status") == {"online": True, "networks": 2, "asked": {"command": "status"}}


async def test_a_failing_command_reaches_the_cli_as_one_line_control_error(state_dir: Path, daemon: Daemon) -> None:
    with pytest.raises(ControlError) as failure:
        await ask(state_dir, "join", network="xyz")
    assert str(failure.value) == "invalid network id 'xyz': expected 16 hex digits"
    assert await raw_exchange(state_dir, b'{"command": "frobnicate"}\n') == {
        "ok": False,
        "error": "unknown command 'frobnicate'",
    }


async def test_asking_with_no_daemon_running_says_so(state_dir: Path) -> None:
    with pytest.raises(ControlError, match="no l2mesh daemon is running"):
        await ask(state_dir, "status")
    # A socket file left behind by a killed daemon: nobody answers there.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(control_path(state_dir)))
    stale.close()
    with pytest.raises(ControlError, match="no l2mesh daemon is running"):
        await ask(state_dir, "status")


async def test_a_second_server_on_the_same_state_dir_is_refused(state_dir: Path, daemon: Daemon) -> None:
    with pytest.raises(L2meshError, match="another l2mesh daemon already uses"):
        await serve_control(state_dir, daemon.handle)
    assert await ask(state_dir, "status")  # the first one still answers


async def test_a_client_that_never_finishes_its_line_gets_an_error_and_the_server_keeps_serving(
    state_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    daemon = Daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, state_dir, daemon.handle)
        slow = await trio.open_unix_socket(str(control_path(state_dir)))
        async with slow:
            await slow.send_all(b'{"command": "sta')  # and then nothing
            with trio.fail_after(CLIENT_TIMEOUT_S * 2):
                answer = await slow.receive_some(4096)
        assert answer.endswith(b"\n") and json.loads(answer)["ok"] is False
        assert (await raw_exchange(state_dir, b'{"command": "status"}\n'))["ok"] is True
        nursery.cancel_scope.cancel()


# -- ReactorEdge.call --------------------------------------------------------------------------------------


@pytest.fixture
async def edge() -> AsyncIterator[ReactorEdge]:
    reactor = Reactor(lambda now: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    edge = ReactorEdge(reactor, sock, DatagramSender(sock), pause_readers=False)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(edge.run_reactor, nursery.cancel_scope)
            yield edge
            reactor.stop()  # the reactor thread returns, and run_reactor cancels the nursery
    finally:
        edge.shutdown()
        sock.close()
    assert reactor.finished.is_set()


async def test_call_runs_the_function_on_the_reactor_thread_and_returns_its_result(edge: ReactorEdge) -> None:
    assert await edge.call(lambda: 6 * 7) == 42
    assert await edge.call(threading.get_ident) != threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        await edge.call(lambda: 1 / 0)
    assert await edge.call(lambda: "still running") == "still running"


async def test_a_slow_call_does_not_block_other_trio_tasks(edge: ReactorEdge) -> None:
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count)
        await edge.call(lambda: time.sleep(0.3))
        nursery.cancel_scope.cancel()
    assert ticks >= 5
