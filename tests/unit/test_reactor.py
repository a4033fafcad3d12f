"""The reactor thread: calls from other threads, and that no handler bug can stop it."""

from __future__ import annotations

import os
import threading

from l2mesh.reactor import Reactor


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
        assert reactor.call(lambda: len(seen)).result(timeout=5) >= 0
        os.write(write_fd, b"good")
        for _ in range(100):
            if b"good" in seen:
                break
            reactor.call(lambda: None).result(timeout=5)
        assert seen[-1] == b"good"
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
