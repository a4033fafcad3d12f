"""python_floor.py: the floor forwarder's ciphers, and the summary of interleaved ping rounds."""

from __future__ import annotations

import pytest

from benchmarks.helpers.floor_forwarder import CIPHERS, ciphers, endpoint
from benchmarks.python_floor import summarize

KEY = bytes(range(32))


@pytest.mark.parametrize("name", CIPHERS)
def test_a_sealed_frame_opens_to_itself(name: str) -> None:
    seal, open_ = ciphers(name, KEY)
    frame = bytes(range(60))
    assert open_(seal(7, frame)) == frame


@pytest.mark.parametrize("name", ["libsodium", "openssl"])
def test_a_tampered_or_foreign_datagram_does_not_open(name: str) -> None:
    seal, open_ = ciphers(name, KEY)
    datagram = bytearray(seal(7, bytes(60)))
    datagram[-1] ^= 1
    assert open_(bytes(datagram)) is None
    _, other_open = ciphers(name, bytes(32))
    assert other_open(seal(8, bytes(60))) is None


def test_the_two_aead_libraries_agree_on_the_wire() -> None:
    """The same cipher: what one seals the other opens (so the figures compare implementations, not ciphers)."""
    sodium_seal, sodium_open = ciphers("libsodium", KEY)
    openssl_seal, openssl_open = ciphers("openssl", KEY)
    assert sodium_seal(3, b"frame") == openssl_seal(3, b"frame")
    assert openssl_open(sodium_seal(4, b"frame")) == b"frame"


def test_endpoint_and_unknown_cipher() -> None:
    assert endpoint("198.18.1.2:9950") == ("198.18.1.2", 9950)
    with pytest.raises(ValueError):
        ciphers("rot13", KEY)


def ping(avg: float | None, worst: float | None) -> dict[str, float | None]:
    return {"avg_ms": avg, "max_ms": worst, "loss_pct": 0.0}


def test_summary_takes_medians_and_subtracts_the_raw_path() -> None:
    rows = [
        {"system": "underlay", "round": 1, "ping_0_2": ping(0.06, 0.08), "ping_0_01": ping(0.05, 0.1)},
        {"system": "floor-none", "round": 1, "ping_0_2": ping(0.40, 0.5), "ping_0_01": ping(0.35, 0.9)},
        {"system": "underlay", "round": 2, "ping_0_2": ping(0.08, 0.09), "ping_0_01": ping(0.07, 0.2)},
        {"system": "floor-none", "round": 2, "ping_0_2": ping(0.44, 0.7), "ping_0_01": ping(None, None)},
    ]
    summary = summarize(rows)
    assert summary["underlay"]["ping_0_2"] == {"avg_ms": 0.07, "max_ms": 0.09, "added_ms": 0.0}
    floor = summary["floor-none"]
    assert floor["ping_0_2"]["avg_ms"] == pytest.approx(0.42)
    assert floor["ping_0_2"]["max_ms"] == 0.7
    assert floor["ping_0_2"]["added_ms"] == pytest.approx(0.35)
    assert floor["ping_0_01"]["avg_ms"] == 0.35  # a round without a figure is left out
    assert floor["ping_0_01"]["added_ms"] == pytest.approx(0.29)


def test_summary_without_the_raw_path_adds_nothing() -> None:
    rows = [{"system": "tinc", "round": 1, "ping_0_2": ping(0.3, 0.4), "ping_0_01": ping(0.3, 0.5)}]
    assert summarize(rows)["tinc"]["ping_0_2"]["added_ms"] is None
