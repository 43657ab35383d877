"""Wire format of remote environments: length-prefixed binary frames, no pickle.

A frame is a 10-byte header ``!4sBBI`` (magic ``b"FXEP"``, protocol version, message type,
payload length) followed by the payload. A payload is a 4-byte JSON length, a UTF-8 JSON object
(metadata plus one ``{"name", "dtype", "shape"}`` descriptor per array) and the arrays' raw
bytes, concatenated in descriptor order. Only plain numeric/bool dtypes are accepted.

``decode`` is total: any byte string either decodes or raises ``ProtocolError`` (fuzzed in
``tests/test_protocol_fuzz.py``). The HELLO payload starts with a 32-byte HMAC over the
challenge nonce and the rest of the payload, checked before the rest is parsed (``open_hello``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import socket
import struct
import time
from typing import Any

import numpy as np

from forceexp.errors import ProtocolError

MAGIC = b"FXEP"
VERSION = 2  # 2: HELLO carries a binary HMAC over nonce + payload
HEADER = struct.Struct("!4sBBI")
JSON_LENGTH = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
MAX_HELLO = 1024 * 1024  # cap on the (unauthenticated) HELLO frame
MAX_DIMS = 32  # numpy's limit on array dimensions
MAC_SIZE = 32
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
        ProtocolError: for every malformed payload (truncated, invalid or deeply nested JSON, a
            header that is not ``{"meta": {...}, "arrays": [...]}``, a bad descriptor or dtype,
            a shape whose size does not fit the payload, trailing bytes); nothing else.
    """
    if len(payload) < JSON_LENGTH.size:
        raise ProtocolError("payload: shorter than its JSON length field")
    (size,) = JSON_LENGTH.unpack_from(payload)
    start = JSON_LENGTH.size
    if start + size > len(payload):
        raise ProtocolError(f"payload: JSON length {size} exceeds the payload")
    meta, descriptors = _header(bytes(payload[start : start + size]))
    offset, arrays = start + size, {}
    for item in descriptors:
        name, array, offset = _read_array(payload, offset, item)
        if name in arrays:
            raise ProtocolError(f"payload: array name {name!r} appears twice")
        arrays[name] = array
    if offset != len(payload):
        raise ProtocolError(f"payload: {len(payload) - offset} trailing bytes")
    if not arrays:
        return meta, None
    if set(arrays) == {SINGLE}:
        return meta, arrays[SINGLE]
    return meta, arrays


def _header(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    """Parse the JSON header into ``(meta, descriptors)``."""
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload: invalid JSON header ({_brief(exc)})") from None
    if not isinstance(header, dict):
        kind = type(header).__name__
        raise ProtocolError(f"payload: JSON header is a {kind}; expected an object")
    meta, descriptors = header.get("meta"), header.get("arrays")
    if not isinstance(meta, dict) or not isinstance(descriptors, list):
        raise ProtocolError(
            'payload: invalid JSON header; expected {"meta": {...}, "arrays": [...]}'
        )
    return meta, descriptors


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:100]}"


def _descriptor(item: Any) -> tuple[str, str, tuple[int, ...]]:
    """Check one array descriptor: a str name, an allowed dtype, a list of non-negative ints."""
    if not isinstance(item, dict):
        raise ProtocolError(f"payload: invalid array descriptor {str(item)[:100]}")
    name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError(
            f"payload: invalid array descriptor {str(item)[:100]} (name must be a str, dtype one "
            f"of {sorted(DTYPES)})"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or any(type(d) is not int or not 0 <= d <= MAX_FRAME for d in shape)
    ):
        raise ProtocolError(
            f"payload: invalid array descriptor {str(item)[:100]} (shape must be a list of at "
            f"most {MAX_DIMS} ints in [0, {MAX_FRAME}])"
        )
    return name, dtype, tuple(shape)


def _read_array(payload: bytes, offset: int, item: Any) -> tuple[str, np.ndarray, int]:
    name, dtype, shape = _descriptor(item)
    count = math.prod(shape)  # Python ints: no overflow
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > len(payload) - offset:
        raise ProtocolError(f"payload: array {name!r} is truncated")
    try:
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
    except (ValueError, MemoryError) as exc:
        raise ProtocolError(f"payload: array {name!r} cannot be read ({_brief(exc)})") from None
    return name, array.copy(), offset + nbytes


def send_frame(sock: socket.socket, kind: int, payload: bytes = b"") -> None:
    """Send one frame (header + payload)."""
    try:
        sock.sendall(HEADER.pack(MAGIC, VERSION, kind, len(payload)) + payload)
    except OSError as exc:
        raise ConnectionLost(f"connection lost while sending ({exc})") from None


def recv_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    """Read exactly ``size`` bytes, all before ``deadline`` (``time.monotonic()``) if given.

    Raises:
        ConnectionLost: the peer closed the connection, a read timed out, or the deadline passed.
    """
    chunks, left = [], size
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLost("frame not complete within the frame timeout")
            sock.settimeout(remaining)
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


def recv_frame(
    sock: socket.socket, max_frame: int = MAX_FRAME, frame_timeout: float | None = None
) -> tuple[int, bytes]:
    """Read one frame and return ``(kind, payload)``.

    The wait for the frame's first byte uses the socket's own timeout; with ``frame_timeout``,
    the whole rest of the frame must arrive within that many seconds of the first byte (a peer
    trickling bytes cannot hold the connection).

    Raises:
        ProtocolError: wrong magic or version, unknown type, or a payload over ``max_frame``.
        ConnectionLost: the peer went away or missed the frame deadline.
    """
    saved = sock.gettimeout()
    try:
        first = recv_exact(sock, 1)
        deadline = None if frame_timeout is None else time.monotonic() + frame_timeout
        header = first + recv_exact(sock, HEADER.size - 1, deadline)
        magic, version, kind, length = HEADER.unpack(header)
        if magic != MAGIC:
            raise ProtocolError(f"frame: bad magic {magic!r} (not a forceexp peer)")
        if version != VERSION:
            raise ProtocolError(f"frame: protocol version {version}; this side speaks {VERSION}")
        if kind not in TYPE_NAMES:
            raise ProtocolError(f"frame: unknown message type {kind}")
        if length > max_frame:
            raise ProtocolError(f"frame: payload of {length} bytes exceeds the cap of {max_frame}")
        return kind, recv_exact(sock, length, deadline)
    finally:
        if frame_timeout is not None:
            sock.settimeout(saved)


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


def sign(secret: str | bytes, nonce: str, body: bytes) -> bytes:
    """HMAC-SHA256 of the challenge nonce (hex) followed by ``body``, under the shared secret."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, bytes.fromhex(nonce) + body, hashlib.sha256).digest()


def seal_hello(secret: str | bytes | None, nonce: str, meta: dict[str, Any]) -> bytes:
    """HELLO payload: the 32-byte MAC (zeros without a secret), then the encoded ``meta``."""
    body = encode(meta)
    mac = sign(secret, nonce, body) if secret is not None else bytes(MAC_SIZE)
    return mac + body


def open_hello(payload: bytes, secret: str | bytes | None, nonce: str) -> dict[str, Any]:
    """Check the HELLO's MAC (when there is a secret) before parsing anything else, then decode.

    Raises:
        ProtocolError: authentication failed, or the payload is malformed.
    """
    mac, body = payload[:MAC_SIZE], payload[MAC_SIZE:]
    if secret is not None and not hmac.compare_digest(mac, sign(secret, nonce, body)):
        raise ProtocolError("handshake: authentication failed (wrong shared secret)")
    if len(payload) < MAC_SIZE:
        raise ProtocolError("handshake: HELLO shorter than its MAC")
    return decode(body)[0]
