"""The socket server: one thread and one environment per client, frame deadlines, a session cap.

Every connection gets its own session thread, so a slow or hostile client only holds its own
thread. Each session builds its own copy of the environment from the spec (an environment
*instance* cannot be copied: it is lent to one session at a time and others are told the server
is busy). A frame must arrive whole within ``frame_timeout`` seconds of its first byte; with a
secret, the HELLO's HMAC is checked before any JSON is parsed; any malformed input is answered
with an ERROR to that client only, and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

from forceexp.environments import protocol as wire
from forceexp.environments.socket import same_specs
from forceexp.errors import ConfigError, ProtocolError, message

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Environments:
    """Hands each session an environment: a fresh copy, or the one shared instance if free."""

    def __init__(self, spec: Any, max_episode_timesteps: int | None) -> None:
        import gymnasium

        from forceexp.environments import Environment, create
        from forceexp.environments.vectorized import VectorizedEnvironment, refuse_remote

        self.spec, self.limit = spec, max_episode_timesteps
        self.first = create(spec, max_episode_timesteps=max_episode_timesteps)
        refuse_remote(self.first)
        self.shared = isinstance(spec, Environment | VectorizedEnvironment | gymnasium.Env)
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[Any]:
        """An environment for one session, closed (or given back) when the session ends."""
        if self.shared:
            if not self.lock.acquire(blocking=False):
                raise ProtocolError(
                    "server busy: it serves an environment instance to one client at a time"
                )
            try:
                yield self.first
            finally:
                self.lock.release()
            return
        from forceexp.environments import create

        env = create(self.spec, max_episode_timesteps=self.limit)
        try:
            yield env
        finally:
            env.close()


def _check(name: str, value: Any, minimum: float, allow_none: bool = True) -> None:
    ok = (value is None and allow_none) or (
        isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
    )
    if not ok:
        expected = f"a number >= {minimum}" + (" or None" if allow_none else "")
        raise ConfigError(message(f"serve.{name}", value, expected))


def serve(
    environment: Any,
    host: str = "127.0.0.1",
    port: int = 65432,
    secret: str | None = None,
    max_episode_timesteps: int | None = None,
    max_frame: int = wire.MAX_FRAME,
    read_timeout: float | None = 600.0,
    frame_timeout: float = 10.0,
    max_sessions: int = 64,
    max_connections: int | None = None,
) -> None:
    """Serve an environment to many clients at once, forever (or ``max_connections`` clients).

    Args:
        environment: Anything ``Environment.create`` takes; specs, names and factories are
            re-created per client, an instance is lent to one client at a time.
        host: Interface to bind (default loopback only).
        port: TCP port (0 picks a free one; it is printed on stderr).
        secret: Shared secret clients must prove (HMAC challenge); strongly advised off loopback.
        max_episode_timesteps: Episode limit of the served environment.
        max_frame: Largest accepted frame payload in bytes after the handshake.
        read_timeout: Seconds a connected client may stay silent between frames (None: no limit).
        frame_timeout: Seconds a frame may take from its first byte to its last (and the HELLO
            from the connection); a client trickling bytes is dropped after this.
        max_sessions: Most clients served at once; more are answered "server busy".
        max_connections: Stop accepting after this many connections (None: serve forever).

    Raises:
        ConfigError: For a bad timeout or limit.
    """
    _check("read_timeout", read_timeout, 0.001)
    _check("frame_timeout", frame_timeout, 0.001, allow_none=False)
    _check("max_sessions", max_sessions, 1, allow_none=False)
    if host not in LOOPBACK and not secret:
        log.warning("serving on %s without a shared secret: anyone who can connect may", host)
    envs = _Environments(environment, max_episode_timesteps)
    limits = _Limits(secret, max_frame, read_timeout, frame_timeout)
    slots = threading.BoundedSemaphore(int(max_sessions))
    server = socket.create_server((host, port), reuse_port=False)
    log.info("Serving %r on %s:%d", envs.first, host, server.getsockname()[1])
    print(f"forceexp.serve listening on {host}:{server.getsockname()[1]}", file=sys.stderr)
    threads: list[threading.Thread] = []
    try:
        while max_connections is None or len(threads) < max_connections:
            conn, address = server.accept()
            thread = threading.Thread(
                target=_run_session, args=(conn, address, envs, limits, slots), daemon=True
            )
            thread.start()
            threads = [t for t in threads if t.is_alive() or max_connections is not None]
            threads.append(thread)
        for thread in threads:
            thread.join()
    finally:
        server.close()
        envs.first.close()


class _Limits:
    """Per-connection settings shared by all sessions."""

    def __init__(
        self,
        secret: str | None,
        max_frame: int,
        read_timeout: float | None,
        frame_timeout: float,
    ) -> None:
        self.secret, self.max_frame = secret, max_frame
        self.read_timeout, self.frame_timeout = read_timeout, frame_timeout


def _run_session(
    conn: socket.socket,
    address: Any,
    envs: _Environments,
    limits: _Limits,
    slots: threading.BoundedSemaphore,
) -> None:
    """Serve one connection; never raises (a session's failure is that client's only)."""
    with conn:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(limits.frame_timeout)
            if not slots.acquire(blocking=False):
                _refuse(conn, address, "server busy: too many concurrent sessions; retry later")
                return
            try:
                _Session(conn, envs, limits).run(address)
            finally:
                slots.release()
        except Exception as exc:  # a bug or an OS error: log it, keep the server up
            log.exception("client %s: session failed (%s)", address, type(exc).__name__)


def _refuse(conn: socket.socket, address: Any, text: str) -> None:
    log.warning("client %s refused: %s", address, text)
    with contextlib.suppress(ProtocolError):
        wire.send(conn, wire.ERROR, {"message": text})


class _Session:
    """One client connection: handshake, then answer reset/execute until close."""

    def __init__(self, conn: socket.socket, envs: _Environments, limits: _Limits) -> None:
        self.conn, self.envs, self.limits = conn, envs, limits
        self.in_episode = False

    def run(self, address: Any) -> None:
        try:
            self._handshake()
            self.conn.settimeout(self.limits.read_timeout)
            with self.envs.lend() as env:
                self._send_specs(env)
                self._serve(env)
        except wire.ConnectionLost as exc:
            log.info("client %s left (%s)", address, exc)
        except ProtocolError as exc:
            _refuse(self.conn, address, str(exc))

    def _handshake(self) -> None:
        """Challenge, then check the HELLO's MAC before parsing it, then version and specs."""
        nonce = secrets.token_hex(32)
        auth = self.limits.secret is not None
        challenge = {"version": wire.VERSION, "nonce": nonce, "auth": auth}
        wire.send(self.conn, wire.CHALLENGE, challenge)
        kind, payload = wire.recv_frame(self.conn, wire.MAX_HELLO, self.limits.frame_timeout)
        if kind != wire.HELLO:
            raise ProtocolError(f"expected a 'hello' message, got {wire.TYPE_NAMES[kind]!r}")
        hello = wire.open_hello(payload, self.limits.secret, nonce)
        if hello.get("version") != wire.VERSION:
            raise ProtocolError(
                f"handshake: client version {hello.get('version')!r} != {wire.VERSION}"
            )
        self.hello = hello

    def _send_specs(self, env: Any) -> None:
        states, actions = env.states(), env.actions()
        for kind, expected, have in (
            ("state", self.hello.get("states"), states),
            ("action", self.hello.get("actions"), actions),
        ):
            try:
                same = expected is None or same_specs(expected, have, kind)
            except Exception as exc:  # any malformed spec from the client
                raise ProtocolError(f"handshake: invalid {kind} spec from client ({exc})") from None
            if not same:
                raise ProtocolError(
                    f"handshake: {kind} spec mismatch: client {expected}, server {have}"
                )
        specs = {"states": states, "actions": actions}
        specs["max_episode_timesteps"] = env.max_episode_timesteps()
        wire.send(self.conn, wire.SPECS, specs)

    def _serve(self, env: Any) -> None:
        while True:
            kind, payload = wire.recv_frame(
                self.conn, self.limits.max_frame, self.limits.frame_timeout
            )
            meta, value = wire.decode(payload)
            if kind == wire.CLOSE:
                return
            try:
                self._answer(env, kind, meta, value)
            except ProtocolError:
                raise
            except Exception as exc:  # the environment failed: tell the client
                name = type(exc).__name__
                raise ProtocolError(f"environment raised {name}: {exc}") from None

    def _answer(self, env: Any, kind: int, meta: dict[str, Any], value: Any) -> None:
        if kind == wire.RESET:
            seed = meta.get("seed")
            if seed is not None and (type(seed) is not int or not 0 <= seed < 2**63):
                raise ProtocolError(message("reset.seed", seed, "None or an int in [0, 2**63)"))
            wire.send(self.conn, wire.RESULT, {}, env.reset(seed=seed))
            self.in_episode = True
        elif kind == wire.EXECUTE:
            if not self.in_episode:  # each client starts its own episode
                raise ProtocolError("execute before reset (or after the episode ended)")
            states, terminal, reward = env.execute(value)
            self.in_episode = not terminal
            wire.send(self.conn, wire.RESULT, {"terminal": int(terminal), "reward": reward}, states)
        else:
            raise ProtocolError(f"unexpected {wire.TYPE_NAMES[kind]!r} message")
