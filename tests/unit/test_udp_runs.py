"""l2mesh.edge.udp: datagrams held during a wake-up leave in runs, one segmented send each, over real loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from l2mesh.edge.udp import MAX_SEGMENTS_PER_SEND, UDP_GRO, DatagramSender


@pytest.fixture
def pair() -> Iterator[tuple[DatagramSender, socket.socket, list[str]]]:
    """A sender whose system calls are recorded by name, and a receiver on loopback."""
    sender_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    sender = DatagramSender(sender_sock)
    calls: list[str] = []
    real_sendto, real_sendmsg = sender._sendto, sender._sendmsg

    def sendto(*args: Any) -> int:
        calls.append("sendto")
        return real_sendto(*args)

    def sendmsg(*args: Any) -> int:
        calls.append("sendmsg")
        return real_sendmsg(*args)

    sender._sendto, sender._sendmsg = sendto, sendmsg  # type: ignore[method-assign]
    try:
        yield sender, receiver, calls
    finally:
        sender_sock.close()
        receiver.close()


def receive(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(65536) for _ in range(count)]


def test_a_held_run_of_equal_datagrams_is_one_send_and_arrives_as_separate_datagrams_in_order(pair: Any) -> None:
    sender, receiver, calls = pair
    address = receiver.getsockname()
    datagrams = [bytes([i]) * 100 for i in range(10)]
    sender.hold()
    for datagram in datagrams:
        sender.send_datagram(datagram, address)
    assert calls == []  # nothing left before the wake-up ended
    sender.release()
    assert calls == ["sendmsg"]
    assert receive(receiver, 10) == datagrams


def test_a_receiver_with_udp_gro_takes_the_run_in_one_receive(pair: Any) -> None:
    sender, receiver, calls = pair
    receiver.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    sender.hold()
    for i in range(5):
        sender.send_datagram(bytes([i]) * 200, receiver.getsockname())
    sender.release()
    data, control, _, _ = receiver.recvmsg(65536, socket.CMSG_SPACE(4))
    assert data == b"".join(bytes([i]) * 200 for i in range(5))
    assert int.from_bytes(control[0][2][:2], "little") == 200


def test_a_shorter_datagram_ends_a_run_a_longer_one_or_another_address_starts_a_new_one(pair: Any) -> None:
    sender, receiver, calls = pair
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(2.0)
    try:
        sender.hold()
        for datagram in (b"a" * 100, b"b" * 100, b"c" * 60, b"d" * 60):  # run 1 ends with the short one
            sender.send_datagram(datagram, receiver.getsockname())
        sender.send_datagram(b"e" * 300, receiver.getsockname())  # longer: run 3
        sender.send_datagram(b"f" * 300, other.getsockname())  # another address: run 4
        sender.release()
        assert calls == ["sendmsg", "sendto", "sendto", "sendto"]
        assert receive(receiver, 5) == [b"a" * 100, b"b" * 100, b"c" * 60, b"d" * 60, b"e" * 300]
        assert other.recv(65536) == b"f" * 300
    finally:
        other.close()


def test_runs_stop_at_the_segment_limit(pair: Any) -> None:
    sender, receiver, calls = pair
    sender.hold()
    for i in range(MAX_SEGMENTS_PER_SEND + 1):
        sender.send_datagram(i.to_bytes(2, "big") * 32, receiver.getsockname())
    sender.release()
    assert calls == ["sendmsg", "sendto"]
    assert [int.from_bytes(d[:2], "big") for d in receive(receiver, MAX_SEGMENTS_PER_SEND + 1)] == list(
        range(MAX_SEGMENTS_PER_SEND + 1)
    )


def test_a_segmented_send_during_a_hold_goes_after_what_was_held(pair: Any) -> None:
    sender, receiver, calls = pair
    sender.hold()
    sender.send_datagram(b"first", receiver.getsockname())
    sender.send_segments(b"x" * 300, 100, receiver.getsockname())
    sender.release()
    assert receive(receiver, 4) == [b"first", b"x" * 100, b"x" * 100, b"x" * 100]


def test_without_a_hold_every_datagram_goes_at_once(pair: Any) -> None:
    sender, receiver, calls = pair
    for _ in range(3):
        sender.send_datagram(b"now", receiver.getsockname())
    assert calls == ["sendto"] * 3
    assert receive(receiver, 3) == [b"now"] * 3
