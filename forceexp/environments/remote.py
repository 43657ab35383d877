"""Base class of environments that run elsewhere (worker process, socket server).

A remote environment splits each call into ``send_reset``/``send_execute`` and ``receive`` so the
runner can start all environments before waiting for any, and serve them as they become ready
(``fileno`` makes them usable with ``multiprocessing.connection.wait``).
"""

from __future__ import annotations

from typing import Any

from forceexp.environments.environment import TRUNCATED, Environment
from forceexp.errors import ProtocolError


class RemoteEnvironmentError(ProtocolError):
    """A remote environment died, disconnected or reported an error."""


class RemoteEnvironment(Environment):
    """An environment whose calls are sent to another process and answered asynchronously.

    Args:
        max_episode_timesteps: Optional client-side episode limit (terminal 2 at the limit).
    """

    def __init__(self, max_episode_timesteps: int | None = None) -> None:
        self._limit = max_episode_timesteps
        self._timestep = 0
        self._pending: str | None = None
        self._states_spec: dict[str, Any] = {}
        self._actions_spec: dict[str, Any] = {}
        self._remote_limit: int | None = None

    def states(self) -> dict[str, Any]:
        """State spec reported by the remote side."""
        return self._states_spec

    def actions(self) -> dict[str, Any]:
        """Action spec reported by the remote side."""
        return self._actions_spec

    def max_episode_timesteps(self) -> int | None:
        """The client-side limit, else the remote environment's."""
        return self._limit if self._limit is not None else self._remote_limit

    # ------------------------------------------------------------------ asynchronous calls
    def send_reset(self, seed: int | None = None) -> None:
        """Ask the remote side to reset (answer via ``receive``)."""
        self._check_idle("reset")
        self._send("reset", {"seed": seed}, None)
        self._pending = "reset"

    def send_execute(self, actions: Any) -> None:
        """Send actions (answer via ``receive``)."""
        self._check_idle("execute")
        self._send("execute", {}, actions)
        self._pending = "execute"

    def receive(self) -> tuple[str, Any]:
        """Wait for the pending answer: ``('reset', states)`` or ``('execute', (s, t, r))``."""
        if self._pending is None:
            raise ProtocolError("receive: no call is pending")
        kind, self._pending = self._pending, None
        meta, value = self._receive()
        if kind == "reset":
            self._timestep = 0
            return kind, value
        terminal = int(meta["terminal"])
        self._timestep += 1
        if terminal == 0 and self._limit is not None and self._timestep >= self._limit:
            terminal = TRUNCATED
        return kind, (value, terminal, float(meta["reward"]))

    @property
    def pending(self) -> str | None:
        """The call awaiting an answer, if any."""
        return self._pending

    def fileno(self) -> int:
        """File descriptor that becomes readable when an answer arrives."""
        raise NotImplementedError

    # ------------------------------------------------------------------ synchronous calls
    def reset(self, seed: int | None = None) -> Any:
        """Reset and wait for the first states."""
        self.send_reset(seed)
        return self.receive()[1]

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """Execute and wait for ``(states, terminal, reward)``."""
        self.send_execute(actions)
        return self.receive()[1]

    # ------------------------------------------------------------------ transport
    def _send(self, kind: str, meta: dict[str, Any], value: Any) -> None:
        raise NotImplementedError

    def _receive(self) -> tuple[dict[str, Any], Any]:
        raise NotImplementedError

    def _check_idle(self, call: str) -> None:
        if self._pending is not None:
            raise ProtocolError(f"{call}: the previous {self._pending!r} has not been received")
