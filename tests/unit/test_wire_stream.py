"""l2mesh.wire.stream: the upgrade heads and the frames, cut into arbitrary chunks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2mesh.wire.stream import (
    MAX_HEAD_BYTES,
    FrameDecoder,
    HeadReader,
    StreamError,
    check_request,
    check_response,
    encode_frame,
    encode_segments,
    refusal,
    upgrade_request,
    upgrade_response,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def test_the_request_is_exactly_the_documented_bytes_and_is_accepted() -> None:
    request = upgrade_request("198.18.0.1", 9993)
    assert request == (b"GET /l2mesh/relay HTTP/1.1\r\nHost: 198.18.0.1:9993\r\n"
                       b"Connection: Upgrade\r\nUpgrade: l2mesh-relay/1\r\n\r\n")
    assert check_request(request[:-4]) is None
    assert b"Host: [2001:db8::1]:9993\r\n" in upgrade_request("2001:db8::1", 9993)


def test_the_response_is_exactly_the_documented_bytes_and_is_accepted() -> None:
    response = upgrade_response()
    assert response == b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: l2mesh-relay/1\r\n\r\n"
    check_response(response[:-4])


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),
        (b"POST /l2mesh/relay HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: l2mesh-relay/1", 400),
        (b"GET /l2mesh/relay HTTP/1.1\r\nHost: x", 426),
        (b"GET /l2mesh/relay HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket", 426),
        (b"GET /l2mesh/relay HTTP/1.1\r\nHost: x\r\nconnection: keep-alive, upgrade\r\nUPGRADE: L2MESH-RELAY/1", None),
        (b"\xff\xfe", 400),
        (b"GET /l2mesh/relay HTTP/1.1\r\nno colon here", 400),
    ],
)
def test_requests_other_than_ours_are_refused_with_400_or_426(head: bytes, status: int | None) -> None:
    assert check_request(head) == status


def test_refusals_are_complete_http_responses_that_the_client_rejects() -> None:
    for status in (400, 426):
        reader = HeadReader()
        head = reader.feed(refusal(status))
        assert head is not None and head.startswith(f"HTTP/1.1 {status} ".encode())
        with pytest.raises(StreamError):
            check_response(head)


def test_a_head_longer_than_the_limit_is_an_error_even_before_it_ends() -> None:
    reader = HeadReader()
    with pytest.raises(StreamError):
        reader.feed(b"GET /l2mesh/relay HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES)
    with pytest.raises(StreamError):
        HeadReader().feed(b"X" * (MAX_HEAD_BYTES - 1) + b"\r\n\r\n")


@given(st.binary(min_size=1, max_size=9000), st.integers(min_value=1, max_value=1500))
def test_a_run_of_segments_comes_out_as_its_datagrams(run: bytes, segment_bytes: int) -> None:
    expected = [run[i : i + segment_bytes] for i in range(0, len(run), segment_bytes)]
    assert encode_segments(run, segment_bytes) == b"".join(encode_frame(d) for d in expected)
    assert FrameDecoder().feed(encode_segments(run, segment_bytes)) == expected


@given(st.lists(st.binary(min_size=1, max_size=2000), max_size=20), st.lists(st.integers(min_value=0), max_size=30))
def test_frames_come_out_whole_and_in_order_however_the_stream_is_cut(datagrams: list[bytes], cuts: list[int]) -> None:
    head = upgrade_response()
    stream = head + b"".join(encode_frame(d) for d in datagrams)
    reader, decoder = HeadReader(), FrameDecoder()
    got: list[bytes] = []
    seen_head = None
    for chunk in chunked(stream, cuts):
        if seen_head is None:
            seen_head = reader.feed(chunk)
            if seen_head is not None:
                got += decoder.feed(reader.rest)
        else:
            got += decoder.feed(chunk)
    assert seen_head == head[:-4]
    assert got == datagrams and decoder.pending_bytes == 0


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_arbitrary_bytes_give_frames_or_a_stream_error_nothing_else(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame_bytes=200)
    try:
        for chunk in chunked(data, cuts):
            for frame in decoder.feed(chunk):
                assert 0 < len(frame) <= 200
    except StreamError:
        pass
    reader = HeadReader()
    try:
        for chunk in chunked(data, cuts):
            head = reader.feed(chunk)
            if head is not None:
                check_request(head)
                break
    except StreamError:
        pass


def test_a_zero_length_frame_or_one_over_the_bound_is_an_error_and_empty_datagrams_cannot_be_framed() -> None:
    with pytest.raises(StreamError):
        FrameDecoder().feed(b"\x00\x00")
    with pytest.raises(StreamError):
        FrameDecoder(max_frame_bytes=100).feed(b"\x00\x65")
    with pytest.raises(ValueError):
        encode_frame(b"")
    with pytest.raises(ValueError):
        encode_frame(bytes(65536))
