"""Wire format of remote environments: length-prefixed binary frames, no pickle.

A frame is a 10-byte header ``!4sBBI`` (magic ``b"FXEP"``, protocol version, message type,
payload length) followed by the payload. A payload is a 4-byte JSON length, a UTF-8 JSON object
(metadata plus one ``{"name", "dtype", "shape"}`` descriptor per array) and the arrays' raw
bytes, concatenated in descriptor order. Only plain numeric/bool dtypes are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
from typing import Any

import numpy as np

from forceexp.errors import ProtocolError

MAGIC = b"FXEP"
VERSION = 1
HEADER = struct.Struct("!4sBBI")
JSON_LENGTH = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPES = frozenset(("bool", *INT_DTYPES, "float16", "float32", "float64"))

# Message types.
CHALLENGE, HELLO, SPECS, RESET, EXECUTE, RESULT, CLOSE, ERROR = range(1, 9)
TYPE_NAMES = {
    CHALLENGE: "challenge",
    HELLO: "hello",
    SPECS: "specs",
    RESET: "reset",
    EXECUTE: "execute",
    RESULT: "result",
    CLOSE: "close",
    ERROR: "error",
}
SINGLE = "__single__"  # array name used when a value is one unnamed array


class ConnectionLost(ProtocolError):
    """The peer closed the connection or stopped answering."""


def encode(meta: dict[str, Any] | None = None, value: Any = None) -> bytes:
    """Encode JSON metadata and an array (or a dict of arrays) into a payload."""
    arrays: dict[str, np.ndarray] = {}
    if isinstance(value, dict):
        arrays = {str(k): np.asarray(v, order="C") for k, v in value.items()}
    elif value is not None:
        arrays = {SINGLE: np.asarray(value, order="C")}
    descriptors = []
    for name, array in arrays.items():
        if array.dtype.name not in DTYPES:
            raise ProtocolError(f"encode: array {name!r} has unsupported dtype {array.dtype}")
        descriptors.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape)})
    header = json.dumps({"meta": meta or {}, "arrays": descriptors}).encode()
    return b"".join(
        [JSON_LENGTH.pack(len(header)), header, *(a.tobytes() for a in arrays.values())]
    )


def decode(payload: bytes) -> tuple[dict[str, Any], Any]:
    """Decode a payload into ``(meta, value)``; value is an array, a dict of arrays, or None.

    Raises:
        ProtocolError: the payload is truncated, its JSON is invalid, or a dtype is not allowed.
    """
    if len(payload) < JSON_LENGTH.size:
        raise ProtocolError("payload: shorter than its JSON length field")
    (size,) = JSON_LENGTH.unpack_from(payload)
    start = JSON_LENGTH.size
    if start + size > len(payload):
        raise ProtocolError(f"payload: JSON length {size} exceeds the payload")
    try:
        header = json.loads(payload[start : start + size].decode())
        meta, descriptors = header["meta"], header["arrays"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"payload: invalid JSON header ({exc})") from None
    offset, arrays = start + size, {}
    for item in descriptors:
        name, array, offset = _read_array(payload, offset, item)
        arrays[name] = array
    if offset != len(payload):
        raise ProtocolError(f"payload: {len(payload) - offset} trailing bytes")
    if not arrays:
        return meta, None
    if set(arrays) == {SINGLE}:
        return meta, arrays[SINGLE]
    return meta, arrays


def _read_array(payload: bytes, offset: int, item: Any) -> tuple[str, np.ndarray, int]:
    try:
        name, dtype, shape = str(item["name"]), str(item["dtype"]), tuple(item["shape"])
        if dtype not in DTYPES or any(not isinstance(d, int) or d < 0 for d in shape):
            raise ValueError(f"dtype {dtype!r} / shape {shape!r} not allowed")
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"payload: invalid array descriptor {item!r} ({exc})") from None
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * np.dtype(dtype).itemsize
    if offset + nbytes > len(payload):
        raise ProtocolError(f"payload: array {name!r} is truncated")
    array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
    return name, array.copy(), offset + nbytes


def send_frame(sock: socket.socket, kind: int, payload: bytes = b"") -> None:
    """Send one frame (header + payload)."""
    try:
        sock.sendall(HEADER.pack(MAGIC, VERSION, kind, len(payload)) + payload)
    except OSError as exc:
        raise ConnectionLost(f"connection lost while sending ({exc})") from None


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes.

    Raises:
        ConnectionLost: the peer closed the connection or the read timed out.
    """
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except TimeoutError:
            raise ConnectionLost("no answer within the read timeout") from None
        except OSError as exc:
            raise ConnectionLost(f"connection lost ({exc})") from None
        if not chunk:
            raise ConnectionLost("connection closed by the peer")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, max_frame: int = MAX_FRAME) -> tuple[int, bytes]:
    """Read one frame and return ``(kind, payload)``.

    Raises:
        ProtocolError: wrong magic or version, unknown type, or a payload over ``max_frame``.
        ConnectionLost: the peer went away.
    """
    magic, version, kind, length = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != MAGIC:
        raise ProtocolError(f"frame: bad magic {magic!r} (not a forceexp peer)")
    if version != VERSION:
        raise ProtocolError(f"frame: protocol version {version}; this side speaks {VERSION}")
    if kind not in TYPE_NAMES:
        raise ProtocolError(f"frame: unknown message type {kind}")
    if length > max_frame:
        raise ProtocolError(f"frame: payload of {length} bytes exceeds the cap of {max_frame}")
    return kind, recv_exact(sock, length)


def send(
    sock: socket.socket, kind: int, meta: dict[str, Any] | None = None, value: Any = None
) -> None:
    """Encode and send one message."""
    send_frame(sock, kind, encode(meta, value))


def receive(
    sock: socket.socket, expected: int, max_frame: int = MAX_FRAME
) -> tuple[dict[str, Any], Any]:
    """Receive one message of type ``expected``; an ERROR message from the peer is raised."""
    kind, payload = recv_frame(sock, max_frame)
    meta, value = decode(payload)
    if kind == ERROR:
        raise ProtocolError(f"peer reported: {meta.get('message', 'unknown error')}")
    if kind != expected:
        raise ProtocolError(
            f"expected a {TYPE_NAMES[expected]!r} message, got {TYPE_NAMES[kind]!r}"
        )
    return meta, value


def sign(secret: str | bytes, nonce: str) -> str:
    """HMAC-SHA256 of the challenge nonce under the shared secret (hex)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, bytes.fromhex(nonce), hashlib.sha256).hexdigest()


def verify(secret: str | bytes, nonce: str, mac: Any) -> bool:
    """Whether ``mac`` answers the challenge ``nonce`` (constant-time comparison)."""
    return isinstance(mac, str) and hmac.compare_digest(sign(secret, nonce), mac)
