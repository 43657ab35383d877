"""Environments over sockets: real server subprocesses on 127.0.0.1, raw-frame abuse, auth."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from forceexp import Environment, Runner
from forceexp.environments import protocol as wire
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.environments.socket import SocketEnvironment
from forceexp.errors import ProtocolError

torch.set_num_threads(1)
pytestmark = pytest.mark.socket
ROOT = Path(__file__).resolve().parents[1]
AGENT = {
    "agent": "ppo",
    "rollout_length": 16,
    "minibatch_size": 64,
    "epochs": 2,
    "network": {"type": "auto", "size": 16, "depth": 1},
    "device": "cpu",
}
SERVE_CODE = (
    "from forceexp import Environment; "
    "Environment.create('CartPole-v1', remote='socket-server', port=0, secret={secret!r})"
)


class Server:
    """A real server subprocess; ``port`` is read from its 'listening on' line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        lines = []
        while select.select([self.process.stdout], [], [], 60)[0]:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"on 127\.0\.0\.1:(\d+)", line)
            if match:
                return int(match.group(1))
        self.stop()
        raise RuntimeError(f"server did not start: {''.join(lines)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def serve_args() -> list[str]:
    return ["-m", "forceexp.serve", "env=cartpole", "port=0"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Two `python -m forceexp.serve` servers on free loopback ports, shared by the module."""
    cwd = tmp_path_factory.mktemp("servers")
    started: list[Server] = []
    try:
        for _ in range(2):
            started.append(Server(serve_args(), cwd))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[Server]:
    """A server of this test only (it gets killed)."""
    server = Server(serve_args(), tmp_path)
    yield server
    server.stop()


@pytest.fixture
def secret_server(tmp_path: Path) -> Iterator[Server]:
    """A server started through ``Environment.create(remote='socket-server')`` with a secret."""
    server = Server(["-c", SERVE_CODE.format(secret="s3cret")], tmp_path)
    yield server
    server.stop()


@pytest.fixture
def agent_json(tmp_path: Path) -> str:
    path = tmp_path / "ppo1.json"
    path.write_text(json.dumps(AGENT))
    return str(path)


def test_seed_two_servers(servers: list[Server], agent_json: str) -> None:
    ports = [server.port for server in servers]
    runner = Runner(
        agent=agent_json, remote="socket-client", host="127.0.0.1,127.0.0.1", port=ports
    )
    runner.run(num_episodes=10)
    assert runner.episodes >= 10
    assert runner.updates >= 1
    runner.run(num_episodes=4, batch_agent_calls=True)
    assert runner.evaluate(num_episodes=2)["episodes"] == 2
    runner.close()
    # the servers keep serving after the client left
    again = Runner(
        agent=agent_json,
        environment="CartPole-v1",  # local copy: specs checked, used by evaluate()
        remote="socket-client",
        host=["127.0.0.1"],
        port=ports,
    )
    again.run(num_timesteps=40)
    again.close()
    assert all(server.process.poll() is None for server in servers)


def test_server_killed_mid_episode(servers: list[Server], doomed: Server, agent_json: str) -> None:
    ports = [servers[0].port, doomed.port]
    runner = Runner(agent=agent_json, remote="socket-client", port=ports)

    def kill(_runner: Runner, _index: int) -> bool:
        doomed.process.kill()
        return True

    with pytest.raises(RemoteEnvironmentError, match=r"environments\[1\].*server died"):
        runner.run(num_episodes=50, callback=kill)


def raw_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    wire.receive(sock, wire.CHALLENGE)
    return sock


def expect_error(sock: socket.socket, pattern: str) -> None:
    """The server answers ERROR matching ``pattern``, then hangs up."""
    with pytest.raises(ProtocolError, match=pattern):
        wire.receive(sock, wire.SPECS)
    with pytest.raises(wire.ConnectionLost):
        wire.recv_frame(sock)
    sock.close()


def test_bad_frames_are_rejected_and_server_keeps_serving(servers: list[Server]) -> None:
    port = servers[0].port
    sock = raw_connection(port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    expect_error(sock, "bad magic")
    sock = raw_connection(port)
    sock.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.HELLO, wire.MAX_HELLO + 1))
    expect_error(sock, "exceeds the cap")
    sock = raw_connection(port)
    sock.sendall(wire.HEADER.pack(wire.MAGIC, 99, wire.HELLO, 0))
    expect_error(sock, "protocol version 99")
    sock = raw_connection(port)
    wire.send_frame(sock, wire.HELLO, bytes(32) + struct.pack("!I", 5) + b"{nope")
    expect_error(sock, "invalid JSON")
    sock = raw_connection(port)
    wire.send_frame(sock, wire.HELLO, wire.seal_hello(None, "00", {"version": 0}))
    expect_error(sock, "client version")
    sock = raw_connection(port)
    sock.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.HELLO, 100) + b"short")
    sock.close()  # truncated frame, then the client vanishes
    env = SocketEnvironment(port=port)  # still serving
    assert env.reset(seed=0).shape == (4,)
    env.close()


def test_malformed_step_after_handshake(servers: list[Server]) -> None:
    env = SocketEnvironment(port=servers[0].port)
    with pytest.raises(RemoteEnvironmentError, match="before reset"):
        env.execute(0)
    env = SocketEnvironment(port=servers[0].port)
    env.reset()
    with pytest.raises(RemoteEnvironmentError, match="environment raised"):
        env.execute(np.zeros(3))
    env = SocketEnvironment(port=servers[0].port)
    env.reset()
    assert env.execute(1)[1] in (0, 1)
    env.close()


def test_wrong_spec_handshake(servers: list[Server], agent_json: str) -> None:
    with pytest.raises(RemoteEnvironmentError, match="state spec mismatch"):
        Runner(
            agent=agent_json,
            environment="Acrobot-v1",
            remote="socket-client",
            port=servers[0].port,
        )
    with pytest.raises(RemoteEnvironmentError, match="state spec mismatch"):
        SocketEnvironment(port=servers[0].port, states={"type": "float", "shape": [3]})
    with pytest.raises(RemoteEnvironmentError, match="action spec mismatch"):
        SocketEnvironment(port=servers[0].port, actions={"type": "int", "num_values": 5})
    env = SocketEnvironment(
        port=servers[0].port,
        states={"type": "float", "shape": 4},
        actions={"type": "int", "num_values": 2},
    )
    env.close()


def test_authentication(secret_server: Server) -> None:
    port = secret_server.port
    with pytest.raises(RemoteEnvironmentError, match="authentication failed"):
        SocketEnvironment(port=port, secret="guess")
    with pytest.raises(RemoteEnvironmentError, match="requires a shared secret"):
        SocketEnvironment(port=port)
    env = Environment.create(remote="socket-client", port=port, secret="s3cret")
    assert env.reset(seed=0).shape == (4,)
    env.close()


def test_connect_gives_up_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteEnvironmentError, match="cannot connect after 2 attempt"):
        SocketEnvironment(port=port, retries=2, connect_timeout=0.5)


def test_train_py_socket_client(servers: list[Server], tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "runner=socket_client",
            f"runner.port={servers[0].port}",
            "runner.num_timesteps=64",
            "runner.use_tqdm=false",
            "eval_episodes=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["timesteps"] >= 64


def test_protocol_round_trip_and_errors() -> None:
    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(True)}
    meta, decoded = wire.decode(wire.encode({"x": 1}, value))
    assert meta == {"x": 1}
    assert decoded["b"].shape == ()
    assert decoded["b"].dtype == np.bool_
    np.testing.assert_array_equal(decoded["a"], value["a"])
    assert wire.decode(wire.encode(None, np.int64(3)))[1].shape == ()
    assert wire.decode(wire.encode())[1] is None
    with pytest.raises(ProtocolError, match="unsupported dtype"):
        wire.encode(None, np.array([object()]))
    payload = wire.encode(None, np.zeros(4))
    with pytest.raises(ProtocolError, match="truncated"):
        wire.decode(payload[:-1])
    with pytest.raises(ProtocolError, match="trailing"):
        wire.decode(payload + b"x")
    with pytest.raises(ProtocolError, match="shorter"):
        wire.decode(b"\x00")
    with pytest.raises(ProtocolError, match="exceeds the payload"):
        wire.decode(struct.pack("!I", 99) + b"{}")
    bad = json.dumps({"meta": {}, "arrays": [{"name": "x", "dtype": "object", "shape": []}]})
    with pytest.raises(ProtocolError, match="invalid array descriptor"):
        wire.decode(struct.pack("!I", len(bad)) + bad.encode())
    sealed = wire.seal_hello("k", "00ff", {"version": 2})
    assert wire.open_hello(sealed, "k", "00ff") == {"version": 2}
    with pytest.raises(ProtocolError, match="authentication failed"):
        wire.open_hello(sealed, "other", "00ff")
    with pytest.raises(ProtocolError, match="authentication failed"):
        wire.open_hello(sealed.replace(b"2}", b"3}"), "k", "00ff")  # any change to the body
    with pytest.raises(ProtocolError, match="shorter than its MAC"):
        wire.open_hello(b"x", None, "00ff")


def test_unknown_and_unexpected_messages(servers: list[Server]) -> None:
    port = servers[0].port
    sock = raw_connection(port)
    sock.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, 200, 0))
    expect_error(sock, "unknown message type 200")
    sock = raw_connection(port)
    wire.send(sock, wire.RESET, {"seed": 0})
    expect_error(sock, "expected a 'hello' message, got 'reset'")
    env = SocketEnvironment(port=port)
    wire.send(env._sock, wire.SPECS)
    with pytest.raises(ProtocolError, match="unexpected 'specs' message"):
        wire.receive(env._sock, wire.RESULT)
    env.close()


def fake_server(reply: dict[str, object]) -> tuple[socket.socket, threading.Thread]:
    """A one-shot raw server on loopback: handshake answering ``reply``, then hang up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle() -> None:
        conn, _ = listener.accept()
        with conn:
            wire.send(conn, wire.CHALLENGE, {"version": wire.VERSION, "nonce": "00", "auth": False})
            wire.open_hello(wire.recv_frame(conn)[1], None, "00")
            wire.send(conn, wire.SPECS, reply)
            with contextlib.suppress(wire.ConnectionLost):
                wire.recv_frame(conn)  # the first call; then the "server" dies without answering

    thread = threading.Thread(target=handle, daemon=True)
    thread.start()
    return listener, thread


def test_client_checks_specs_and_reports_hang_up() -> None:
    specs = {"states": {"type": "float", "shape": [2]}, "actions": {"type": "int", "num_values": 2}}
    listener, thread = fake_server(specs)
    with pytest.raises(RemoteEnvironmentError, match=r"server state spec .* differs"):
        SocketEnvironment(port=listener.getsockname()[1], states={"type": "float", "shape": [3]})
    thread.join(5)
    listener.close()
    listener, thread = fake_server(specs)
    env = SocketEnvironment(port=listener.getsockname()[1], read_timeout=5)
    with pytest.raises(RemoteEnvironmentError, match="server died or hung up"):
        env.reset()
    env.close()
    thread.join(5)
    listener.close()


def test_replay_based_agent_over_sockets(servers: list[Server]) -> None:
    """DQN stores transitions from socket-served environments like from local ones."""
    ports = [server.port for server in servers]
    agent = {"agent": "dqn", "learning_starts": 32, "batch_size": 16, "seed": 0, "device": "cpu"}
    runner = Runner(agent=agent, remote="socket-client", host="127.0.0.1", port=ports)
    runner.run(num_timesteps=200, batch_agent_calls=True)
    assert len(runner.agent.memory) == 200 and runner.updates > 0
    runner.close()
