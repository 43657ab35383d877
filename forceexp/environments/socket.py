"""Environments served over TCP sockets (see ``protocol`` for the wire format).

Handshake: the server sends CHALLENGE ``{version, nonce, auth}``; the client answers HELLO
(a 32-byte HMAC over nonce and payload, then ``{version, states, actions}``, its expected specs,
optional); the server checks the HMAC before parsing the rest, then version and specs, and
answers SPECS ``{states, actions, max_episode_timesteps}`` or ERROR. The server is in
``server.py`` (``serve`` is re-exported here).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

from forceexp.environments import protocol as wire
from forceexp.environments.remote import RemoteEnvironment, RemoteEnvironmentError
from forceexp.errors import ProtocolError
from forceexp.specs import parse_specs

log = logging.getLogger(__name__)

__all__ = ["SocketEnvironment", "serve"]


def same_specs(a: Any, b: Any, kind: str) -> bool:
    """Whether two state (or action) specs are equal once parsed."""
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
            nonce = challenge.get("nonce")
            if not isinstance(nonce, str):
                raise ProtocolError(f"challenge: nonce {nonce!r} is invalid; expected hex")
            hello = {"version": wire.VERSION, "states": states, "actions": actions}
            wire.send_frame(self._sock, wire.HELLO, wire.seal_hello(secret, nonce, hello))
            specs, _ = wire.receive(self._sock, wire.SPECS, self._max_frame)
            self._states_spec, self._actions_spec = specs["states"], specs["actions"]
        except (ProtocolError, KeyError, ValueError) as exc:
            raise RemoteEnvironmentError(f"{self._where}: handshake failed: {exc}") from None
        self._remote_limit = specs.get("max_episode_timesteps")
        for kind, expected, got in (
            ("state", states, specs["states"]),
            ("action", actions, specs["actions"]),
        ):
            if expected is not None and not same_specs(expected, got, kind):
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


def serve(environment: Any, *args: Any, **kwargs: Any) -> None:
    """Serve ``environment`` over TCP; see ``forceexp.environments.server.serve``."""
    from forceexp.environments.server import serve as _serve

    _serve(environment, *args, **kwargs)
