"""Hostile clients against a real `python -m forceexp.serve` process on 127.0.0.1.

After every attack the server process is alive and a well-behaved ``Runner(remote=
'socket-client')`` completes episodes; slow senders never delay other clients.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_socket import AGENT, Server

from forceexp import Runner
from forceexp.environments import protocol as wire
from forceexp.environments.socket import SocketEnvironment
from forceexp.errors import ProtocolError

pytestmark = pytest.mark.socket
FRAME_TIMEOUT = 1.5
SECRET = "s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with a short frame deadline, shared by the module."""
    args = ["-m", "forceexp.serve", "env=cartpole", "port=0", f"frame_timeout={FRAME_TIMEOUT}"]
    started = Server(args, tmp_path_factory.mktemp("hostile"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["-m", "forceexp.serve", "env=cartpole", "port=0", f"secret={SECRET}"]
    started = Server(args, tmp_path_factory.mktemp("hostile-secret"))
    yield started
    started.stop()


def still_serving(server: Server, secret: str | None = None) -> None:
    """The server process is alive and a well-behaved runner completes episodes."""
    assert server.process.poll() is None, "the server process died"
    runner = Runner(agent=AGENT, remote="socket-client", port=server.port, secret=secret)
    runner.run(num_episodes=2, use_tqdm=False)
    assert runner.episodes >= 2
    runner.close()


def connect(port: int) -> tuple[socket.socket, str]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    challenge, _ = wire.receive(sock, wire.CHALLENGE)
    return sock, challenge["nonce"]


def raw_payload(header: bytes | str, *arrays: bytes) -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("!I", len(raw)) + raw + b"".join(arrays)


def descriptor(shape: object, dtype: str = "float32") -> str:
    return json.dumps({"meta": {}, "arrays": [{"name": "x", "dtype": dtype, "shape": shape}]})


DEEP = "[" * 100_000 + "]" * 100_000
MALFORMED = {
    "meta-list": raw_payload('{"meta": [1, 2], "arrays": []}'),
    "meta-string": raw_payload('{"meta": "hello", "arrays": []}'),
    "header-list": raw_payload("[1, 2, 3]"),
    "header-string": raw_payload('"hello"'),
    "deep-json": raw_payload('{"meta": ' + DEEP + ', "arrays": []}'),
    "shape-2^32-squared": raw_payload(descriptor([2**32, 2**32]), bytes(16)),
    "shape-2^63": raw_payload(descriptor([2**63 - 1, 2]), bytes(16)),
    "shape-1e30": raw_payload(descriptor([10**30]), bytes(16)),
    "shape-bool": raw_payload(descriptor([True]), bytes(4)),
    "shape-negative": raw_payload(descriptor([-1]), bytes(4)),
    "shape-float": raw_payload(descriptor([1.5])),
    "shape-not-list": raw_payload(descriptor(7)),
    "dtype-list": raw_payload(descriptor([1], dtype=["float32"]), bytes(4)),  # type: ignore[arg-type]
    "dtype-object": raw_payload(descriptor([1], dtype="object"), bytes(8)),
    "descriptor-int": raw_payload('{"meta": {}, "arrays": [5]}'),
    "duplicate-names": raw_payload(
        '{"meta": {}, "arrays": [{"name": "a", "dtype": "int8", "shape": [1]},'
        ' {"name": "a", "dtype": "int8", "shape": [1]}]}',
        b"\x01\x02",
    ),
    "not-utf8": raw_payload(b"\xff\xfe{}"),
    "json-length-overflow": struct.pack("!I", 2**32 - 1) + b"{}",
    "empty": b"",
}


def expect_error(sock: socket.socket, pattern: str) -> None:
    """The server answers this client with ERROR matching ``pattern``, then hangs up."""
    with pytest.raises(ProtocolError, match=pattern):
        wire.receive(sock, wire.SPECS)
    sock.close()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_hello(server: Server, name: str) -> None:
    sock, _ = connect(server.port)
    wire.send_frame(sock, wire.HELLO, bytes(wire.MAC_SIZE) + MALFORMED[name])
    expect_error(sock, "payload")
    still_serving(server)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_step_after_handshake(server: Server, name: str) -> None:
    env = SocketEnvironment(port=server.port)
    env.reset(seed=0)
    wire.send_frame(env._sock, wire.EXECUTE, MALFORMED[name])
    with pytest.raises(ProtocolError, match="payload"):
        wire.receive(env._sock, wire.RESULT)
    env.close()
    assert server.process.poll() is None


@pytest.mark.parametrize("seed", ["x", -1, 2**70, 1.5, True, [1]])
def test_bad_reset_seed(server: Server, seed: object) -> None:
    env = SocketEnvironment(port=server.port)
    wire.send(env._sock, wire.RESET, {"seed": seed})
    with pytest.raises(ProtocolError, match=r"reset\.seed: .* is invalid; expected None or an int"):
        wire.receive(env._sock, wire.RESULT)
    env.close()
    still_serving(server)


def test_unauthenticated_frames_are_not_parsed(secret_server: Server) -> None:
    """With a secret, the MAC is checked before any JSON: every payload fails authentication."""
    for name in ("meta-list", "deep-json", "shape-2^63", "shape-bool"):
        sock, _ = connect(secret_server.port)
        wire.send_frame(sock, wire.HELLO, bytes(wire.MAC_SIZE) + MALFORMED[name])
        expect_error(sock, "authentication failed")
    sock, nonce = connect(secret_server.port)
    sealed = wire.seal_hello("guess", nonce, {"version": wire.VERSION})
    wire.send_frame(sock, wire.HELLO, sealed)
    expect_error(sock, "authentication failed")
    still_serving(secret_server, secret=SECRET)


def test_authenticated_client_sending_garbage(secret_server: Server) -> None:
    sock, nonce = connect(secret_server.port)
    body = MALFORMED["meta-list"]
    wire.send_frame(sock, wire.HELLO, wire.sign(SECRET, nonce, body) + body)
    expect_error(sock, "payload: invalid JSON header")
    still_serving(secret_server, secret=SECRET)


def test_oversized_hello_is_refused_before_reading(server: Server) -> None:
    sock, _ = connect(server.port)
    sock.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.HELLO, wire.MAX_HELLO + 1))
    expect_error(sock, "exceeds the cap")
    still_serving(server)


def steps_of_a_good_client(port: int) -> float:
    """Seconds a well-behaved client takes to connect, reset and step 5 times."""
    start = time.monotonic()
    env = SocketEnvironment(port=port, read_timeout=10)
    env.reset(seed=0)
    for _ in range(5):
        _, terminal, _ = env.execute(np.int64(0))
        if terminal:
            env.reset()
    env.close()
    return time.monotonic() - start


def test_slow_sender_is_dropped_and_delays_nobody(server: Server) -> None:
    """Half a header, then one byte at a time: others are served meanwhile; it is dropped."""
    half, _ = connect(server.port)
    half.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.HELLO, 40)[:5])
    trickle, _ = connect(server.port)
    frame = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.HELLO, 40) + bytes(40)
    assert steps_of_a_good_client(server.port) < 1.0  # while both attackers hold connections
    start, sent, dropped = time.monotonic(), 0, False
    trickle.settimeout(0.25)
    while time.monotonic() - start < 4 * FRAME_TIMEOUT and sent < len(frame):  # bounded
        try:
            trickle.sendall(frame[sent : sent + 1])
            sent += 1
            if trickle.recv(4096) == b"":
                dropped = True
                break
        except TimeoutError:
            continue
        except OSError:
            dropped = True
            break
    assert dropped, "the trickling client was never dropped"
    assert time.monotonic() - start < 2 * FRAME_TIMEOUT + 1
    half.settimeout(2 * FRAME_TIMEOUT)
    assert half.recv(4096) == b""  # the half-header client was dropped too
    half.close()
    trickle.close()
    still_serving(server)


def test_silent_client_does_not_block_others(server: Server) -> None:
    idle = SocketEnvironment(port=server.port)  # handshake done, then silent
    assert steps_of_a_good_client(server.port) < 1.0
    idle.close()


def test_fifty_concurrent_clients(server: Server) -> None:
    results: list[float | BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            took: float | BaseException = steps_of_a_good_client(server.port)
        except BaseException as exc:  # collected and asserted below
            took = exc
        with lock:
            results.append(took)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert len(results) == 50
    still_serving(server)


def test_session_cap(tmp_path: Path) -> None:
    args = ["-m", "forceexp.serve", "env=cartpole", "port=0", "max_sessions=2"]
    capped = Server(args, tmp_path)
    try:
        first, second = SocketEnvironment(port=capped.port), SocketEnvironment(port=capped.port)
        sock = socket.create_connection(("127.0.0.1", capped.port), timeout=10)
        with pytest.raises(ProtocolError, match="server busy: too many concurrent sessions"):
            wire.receive(sock, wire.CHALLENGE)
        sock.close()
        first.close()
        time.sleep(0.3)
        third = SocketEnvironment(port=capped.port)
        assert third.reset(seed=0).shape == (4,)
        third.close()
        second.close()
    finally:
        capped.stop()


def test_bad_server_settings(tmp_path: Path) -> None:
    from forceexp.environments.server import serve

    with pytest.raises(ValueError, match=r"serve\.frame_timeout: 0 is invalid; expected a number"):
        serve("CartPole-v1", port=0, frame_timeout=0)
    with pytest.raises(ValueError, match=r"serve\.max_sessions: 'x' is invalid"):
        serve("CartPole-v1", port=0, max_sessions="x")
    with pytest.raises(ValueError, match=r"serve\.read_timeout: -1 is invalid"):
        serve("CartPole-v1", port=0, read_timeout=-1)
