"""The reactor thread: calls from other threads, and that no handler bug can stop it."""

from __future__ import annotations

import os
import threading
import time

from l2mesh.edge.reactor import Reactor


def wait_for(reactor: Reactor, condition, attempts: int = 500) -> None:
    for _ in range(attempts):
        if reactor.call(condition).result(timeout=5):
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_failing_packet_handler_is_counted_and_the_loop_keeps_running() -> None:
    reactor = Reactor(lambda now: None, tick_interval_s=0.05)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    seen: list[bytes] = []

    def handler() -> None:
        data = os.read(read_fd, 100)
        seen.append(data)
        if data == b"bad":
            raise ValueError("a bug on a hostile packet")

    thread = threading.Thread(target=reactor.run)
    thread.start()
    try:
        reactor.call(lambda: reactor.add_reader(read_fd, handler)).result(timeout=5)
        os.write(write_fd, b"bad")
        wait_for(reactor, lambda: b"bad" in seen)  # read on its own, before the next write
        os.write(write_fd, b"good")
        wait_for(reactor, lambda: b"good" in seen)
        assert reactor.internal_errors == 1
    finally:
        reactor.stop()
        thread.join(5)
        os.close(read_fd)
        os.close(write_fd)
    assert not thread.is_alive()


def test_call_returns_the_result_or_the_exception_of_the_function() -> None:
    reactor = Reactor(lambda now: None)
    thread = threading.Thread(target=reactor.run)
    thread.start()
    try:
        assert reactor.call(lambda: 6 * 7).result(timeout=5) == 42
        future = reactor.call(lambda: 1 / 0)
        try:
            future.result(timeout=5)
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("the exception did not reach the caller")
    finally:
        reactor.stop()
        thread.join(5)
