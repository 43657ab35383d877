"""Property-based fuzzing of the wire decoder: it returns or raises ProtocolError, nothing else."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forceexp.environments import protocol as wire
from forceexp.errors import ProtocolError

FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
shapes = st.one_of(
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=40),
    st.lists(st.one_of(st.booleans(), st.floats(), st.text(max_size=3)), max_size=4),
    json_values,
)
descriptors = st.fixed_dictionaries(
    {
        "name": st.one_of(st.text(max_size=4), json_values),
        "dtype": st.one_of(st.sampled_from(sorted(wire.DTYPES)), json_values),
        "shape": shapes,
    }
)
headers = st.fixed_dictionaries(
    {"meta": json_values, "arrays": st.one_of(st.lists(descriptors, max_size=3), json_values)}
)


def decodes_or_protocol_error(payload: bytes) -> None:
    try:
        meta, _ = wire.decode(payload)
    except ProtocolError:
        return
    assert isinstance(meta, dict)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(payload: bytes) -> None:
    decodes_or_protocol_error(payload)


@FUZZ
@given(headers, st.binary(max_size=256))
def test_random_headers(header: dict[str, Any], tail: bytes) -> None:
    raw = json.dumps(header).encode()
    decodes_or_protocol_error(struct.pack("!I", len(raw)) + raw + tail)


VALID = [
    wire.encode({"seed": 3}),
    wire.encode({"terminal": 0, "reward": 1.0}, np.arange(6, dtype=np.float32).reshape(2, 3)),
    wire.encode(None, {"a": np.zeros((2, 2), dtype=np.uint8), "b": np.array(True)}),
]


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 64),
)
def test_mutated_valid_payloads(payload: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(payload)
    for position, byte in edits:
        data[position % len(data)] = byte
    decodes_or_protocol_error(bytes(data[: len(data) - cut]))


@FUZZ
@given(st.sampled_from(VALID), st.integers(0, 400), st.integers(0, 7))
def test_every_bit_flip_is_decoded_or_refused(payload: bytes, position: int, bit: int) -> None:
    data = bytearray(payload)
    data[position % len(data)] ^= 1 << bit
    decodes_or_protocol_error(bytes(data))


@settings(max_examples=150, deadline=None, database=None)
@given(st.binary(max_size=64), st.binary(min_size=0, max_size=64))
def test_random_frames_on_a_socket(prefix: bytes, rest: bytes) -> None:
    """``recv_frame`` + ``decode`` on raw bytes: ProtocolError (incl. ConnectionLost) or a value."""
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(1.0)
        left.sendall(prefix + rest)
        left.shutdown(socket.SHUT_WR)
        try:
            _, payload = wire.recv_frame(right, max_frame=4096, frame_timeout=1.0)
            decodes_or_protocol_error(payload)
        except ProtocolError:
            pass


@pytest.mark.parametrize("secret", [None, "k"])
@FUZZ
@given(payload=st.binary(max_size=256))
def test_open_hello_never_crashes(secret: str | None, payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        assert isinstance(wire.open_hello(payload, secret, "00ff"), dict)
