"""Environments served over TCP sockets (see ``protocol`` for the wire format).

Handshake: the server sends CHALLENGE ``{version, nonce, auth}``; the client answers HELLO
``{version, mac, states, actions}`` (its expected specs, optional); the server checks version,
HMAC and specs and answers SPECS ``{states, actions, max_episode_timesteps}`` or ERROR.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import sys
import time
from typing import Any

from forceexp.environments import protocol as wire
from forceexp.environments.remote import RemoteEnvironment, RemoteEnvironmentError
from forceexp.errors import ConfigError, ProtocolError
from forceexp.specs import parse_specs

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _same_specs(a: Any, b: Any, kind: str) -> bool:
    return parse_specs(a, kind).to_dict() == parse_specs(b, kind).to_dict()


class SocketEnvironment(RemoteEnvironment):
    """Client side: an environment served by ``serve`` on ``host:port``.

    Args:
        host: Server host.
        port: Server port.
        index: Environment index, named in error messages.
        secret: Shared secret for the HMAC challenge (required if the server has one).
        states: Expected state spec; a mismatch fails the handshake.
        actions: Expected action spec; a mismatch fails the handshake.
        max_episode_timesteps: Optional client-side episode limit.
        connect_timeout: Seconds per connection attempt.
        retries: Connection attempts before giving up (1 s apart).
        read_timeout: Seconds to wait for an answer before reporting the server dead.
        max_frame: Largest accepted frame payload in bytes.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 65432,
        index: int = 0,
        secret: str | None = None,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        connect_timeout: float = 5.0,
        retries: int = 10,
        read_timeout: float = 60.0,
        max_frame: int = wire.MAX_FRAME,
    ) -> None:
        super().__init__(max_episode_timesteps)
        self.host, self.port, self.index = host, int(port), index
        self._where = f"environments[{index}] at {host}:{port}"
        self._max_frame = max_frame
        self._sock = self._connect(connect_timeout, retries)
        try:
            self._sock.settimeout(read_timeout)
            self._handshake(secret, states, actions)
        except BaseException:
            self._sock.close()
            raise

    def __repr__(self) -> str:
        return f"SocketEnvironment({self.host!r}, {self.port})"

    def _connect(self, timeout: float, retries: int) -> socket.socket:
        error: Exception | None = None
        for attempt in range(max(1, retries)):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                error = exc
                if attempt + 1 < retries:
                    time.sleep(1.0)
        raise RemoteEnvironmentError(
            f"{self._where}: cannot connect after {retries} attempt(s) ({error})"
        )

    def _handshake(self, secret: str | None, states: Any, actions: Any) -> None:
        try:
            challenge, _ = wire.receive(self._sock, wire.CHALLENGE, self._max_frame)
            if challenge.get("auth") and secret is None:
                raise ProtocolError("the server requires a shared secret; pass secret=")
            mac = wire.sign(secret, challenge["nonce"]) if secret is not None else None
            hello = {"version": wire.VERSION, "mac": mac, "states": states, "actions": actions}
            wire.send(self._sock, wire.HELLO, hello)
            specs, _ = wire.receive(self._sock, wire.SPECS, self._max_frame)
        except ProtocolError as exc:
            raise RemoteEnvironmentError(f"{self._where}: handshake failed: {exc}") from None
        self._states_spec, self._actions_spec = specs["states"], specs["actions"]
        self._remote_limit = specs.get("max_episode_timesteps")
        for kind, expected, got in (
            ("state", states, specs["states"]),
            ("action", actions, specs["actions"]),
        ):
            if expected is not None and not _same_specs(expected, got, kind):
                raise RemoteEnvironmentError(
                    f"{self._where}: server {kind} spec {got} differs from the expected {expected}"
                )

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return self._sock.fileno()

    def _send(self, kind: str, meta: dict[str, Any], value: Any) -> None:
        code = wire.RESET if kind == "reset" else wire.EXECUTE
        try:
            wire.send(self._sock, code, meta, value)
        except ProtocolError as exc:
            raise RemoteEnvironmentError(f"{self._where}: {exc}") from None

    def _receive(self) -> tuple[dict[str, Any], Any]:
        try:
            return wire.receive(self._sock, wire.RESULT, self._max_frame)
        except wire.ConnectionLost as exc:
            raise RemoteEnvironmentError(f"{self._where}: server died or hung up ({exc})") from None
        except ProtocolError as exc:
            raise RemoteEnvironmentError(f"{self._where}: {exc}") from None

    def close(self) -> None:
        """Tell the server this client is done (it keeps serving others) and disconnect."""
        with contextlib.suppress(ProtocolError, OSError):
            wire.send(self._sock, wire.CLOSE)
        self._sock.close()


def serve(
    environment: Any,
    host: str = "127.0.0.1",
    port: int = 65432,
    secret: str | None = None,
    max_episode_timesteps: int | None = None,
    max_frame: int = wire.MAX_FRAME,
    read_timeout: float | None = None,
    max_connections: int | None = None,
) -> None:
    """Serve one environment to one client at a time, forever (or ``max_connections`` clients).

    A client that disconnects, sends a malformed frame or fails the handshake is dropped and the
    server waits for the next one.

    Args:
        environment: Anything ``Environment.create`` takes.
        host: Interface to bind (default loopback only).
        port: TCP port (0 picks a free one; it is logged).
        secret: Shared secret clients must prove (HMAC challenge); required off loopback.
        max_episode_timesteps: Episode limit of the served environment.
        max_frame: Largest accepted frame payload in bytes.
        read_timeout: Seconds a connected client may stay silent (None: no limit).
        max_connections: Stop after this many clients (None: serve forever).
    """
    from forceexp.environments import create
    from forceexp.environments.vectorized import refuse_remote

    if host not in LOOPBACK and not secret:
        log.warning("serving on %s without a shared secret: anyone who can connect may", host)
    env = create(environment, max_episode_timesteps=max_episode_timesteps)
    refuse_remote(env)
    server = socket.create_server((host, port), reuse_port=False)
    log.info("Serving %r on %s:%d", env, host, server.getsockname()[1])
    print(f"forceexp.serve listening on {host}:{server.getsockname()[1]}", file=sys.stderr)
    served = 0
    try:
        while max_connections is None or served < max_connections:
            conn, address = server.accept()
            served += 1
            with conn:
                conn.settimeout(read_timeout)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _Session(conn, env, secret, max_frame).run(address)
    finally:
        server.close()
        env.close()


class _Session:
    """One client connection: handshake, then answer reset/execute until close."""

    def __init__(self, conn: socket.socket, env: Any, secret: str | None, max_frame: int) -> None:
        self.conn, self.env, self.secret, self.max_frame = conn, env, secret, max_frame
        self.in_episode = False

    def run(self, address: Any) -> None:
        try:
            self._handshake()
            self._serve()
        except wire.ConnectionLost as exc:
            log.info("client %s left (%s)", address, exc)
        except ProtocolError as exc:
            log.warning("client %s dropped: %s", address, exc)
            with contextlib.suppress(ProtocolError):
                wire.send(self.conn, wire.ERROR, {"message": str(exc)})

    def _handshake(self) -> None:
        nonce = secrets.token_hex(32)
        wire.send(
            self.conn,
            wire.CHALLENGE,
            {"version": wire.VERSION, "nonce": nonce, "auth": bool(self.secret)},
        )
        hello, _ = wire.receive(self.conn, wire.HELLO, self.max_frame)
        if hello.get("version") != wire.VERSION:
            raise ProtocolError(
                f"handshake: client version {hello.get('version')!r} != {wire.VERSION}"
            )
        if self.secret and not wire.verify(self.secret, nonce, hello.get("mac")):
            raise ProtocolError("handshake: authentication failed (wrong shared secret)")
        states, actions = self.env.states(), self.env.actions()
        for kind, expected, have in (
            ("state", hello.get("states"), states),
            ("action", hello.get("actions"), actions),
        ):
            try:
                same = expected is None or _same_specs(expected, have, kind)
            except ConfigError as exc:
                raise ProtocolError(f"handshake: invalid {kind} spec from client ({exc})") from None
            if not same:
                raise ProtocolError(
                    f"handshake: {kind} spec mismatch: client {expected}, server {have}"
                )
        specs = {
            "states": states,
            "actions": actions,
            "max_episode_timesteps": self.env.max_episode_timesteps(),
        }
        wire.send(self.conn, wire.SPECS, specs)

    def _serve(self) -> None:
        while True:
            kind, payload = wire.recv_frame(self.conn, self.max_frame)
            meta, value = wire.decode(payload)
            if kind == wire.CLOSE:
                return
            try:
                if kind == wire.RESET:
                    wire.send(self.conn, wire.RESULT, {}, self.env.reset(seed=meta.get("seed")))
                    self.in_episode = True
                elif kind == wire.EXECUTE:
                    if not self.in_episode:  # each client starts its own episode
                        raise ProtocolError("execute before reset (or after the episode ended)")
                    states, terminal, reward = self.env.execute(value)
                    self.in_episode = not terminal
                    wire.send(
                        self.conn, wire.RESULT, {"terminal": terminal, "reward": reward}, states
                    )
                else:
                    raise ProtocolError(f"unexpected {wire.TYPE_NAMES[kind]!r} message")
            except ProtocolError:
                raise
            except Exception as exc:  # the environment failed: tell the client, keep serving
                name = type(exc).__name__
                raise ProtocolError(f"environment raised {name}: {exc}") from None
