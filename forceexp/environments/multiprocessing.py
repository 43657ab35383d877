"""Environments in persistent worker processes, talking over ``multiprocessing`` pipes.

The environment spec is re-created inside the worker. It is serialised with ``cloudpickle``, so
classes and functions defined in the user's script (``__main__``) travel by value, and a worker
never imports the user's main module: a script without an ``if __name__ == '__main__':`` guard
is not re-run in every worker (see ``start_without_main``). The pipes are private to this process
tree, so messages use ``Connection.send`` (pickle) between our own processes only; nothing
pickled is ever read from a network.

A worker dies with its parent (``prctl(PR_SET_PDEATHSIG)`` on Linux, a parent-alive thread
elsewhere), so killing the runner leaves no process behind; a call that takes longer than
``step_timeout`` is reported naming the environment index and the call, and the worker is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator
from typing import Any

import cloudpickle

from forceexp.environments.remote import RemoteEnvironment, RemoteEnvironmentError
from forceexp.errors import ConfigError, message

POLL_SECONDS = 0.5
_CONTEXTS = ("forkserver", "spawn")


PR_SET_PDEATHSIG = 1
_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def main_hidden() -> Iterator[None]:
    """Hide the user's ``__main__`` module while a worker process is started.

    ``multiprocessing`` tells a forkserver or spawn child to re-import the parent's main module
    (as ``__mp_main__``) when it has a ``__file__`` or ``__spec__``; a script without a main
    guard would then re-run itself in every worker. With a bare stand-in ``__main__`` the child
    skips that import (CPython's ``spawn.get_preparation_data``); the spec is sent by value, so
    the worker needs nothing from the user's main module.
    """
    with _MAIN_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def dump_spec(environment: Any, index: int) -> bytes:
    """Serialise an environment spec for a worker (classes from ``__main__`` by value).

    Raises:
        ConfigError: The spec cannot be serialised (it holds a lock, a socket, an open file...).
    """
    try:
        return cloudpickle.dumps(environment)
    except Exception as exc:
        raise ConfigError(
            message(
                f"environments[{index}]",
                environment,
                "an environment spec that can be sent to a worker process (a name, dict, "
                "config path, class or function; picklable by cloudpickle)",
                f"With remote='multiprocessing' it failed: {type(exc).__name__}: {exc}",
            )
        ) from exc


def die_with_parent(owner: int) -> None:
    """Make this process exit when its parent or the runner ``owner`` (a pid) dies.

    On Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); the
    parent of a forkserver worker is the fork server, so a daemon thread also checks once a
    second that ``owner`` is alive.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def watch() -> None:
        while os.getppid() == parent and not gone(owner):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="forceexp-parent-watch", daemon=True).start()


def _worker(conn: Any, blob: bytes, max_episode_timesteps: int | None, owner: int) -> None:
    """Worker loop: create the environment, then answer reset/execute until close.

    ``blob`` is the spec serialised by ``dump_spec`` in the parent, sent over the private pipe.
    """
    from forceexp.environments import create
    from forceexp.environments.vectorized import refuse_remote

    die_with_parent(owner)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    try:
        env = create(pickle.loads(blob), max_episode_timesteps=max_episode_timesteps)
        refuse_remote(env)
        conn.send(("specs", (env.states(), env.actions(), env.max_episode_timesteps())))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            kind, payload = conn.recv()
            if kind == "close":
                break
            try:
                if kind == "reset":
                    conn.send(("ok", ({}, env.reset(seed=payload))))
                else:
                    states, terminal, reward = env.execute(payload)
                    conn.send(("ok", ({"terminal": terminal, "reward": reward}, states)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        env.close()
        conn.close()


def exit_cause(exitcode: int | None) -> str:
    """Human-readable exit cause of a process (``exit code 3``, ``signal SIGKILL``)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def check_step_timeout(step_timeout: Any) -> None:
    """Raise ConfigError unless ``step_timeout`` is None or a positive number."""
    if step_timeout is not None and (
        isinstance(step_timeout, bool)
        or not isinstance(step_timeout, int | float)
        or not step_timeout > 0
    ):
        raise ConfigError(message("step_timeout", step_timeout, "a number of seconds > 0 or None"))


class ProcessEnvironment(RemoteEnvironment):
    """An environment running in its own worker process.

    Args:
        environment: Environment spec re-created in the worker (see ``Environment.create``);
            sent with ``cloudpickle``, so classes and functions of the main script work.
        index: Environment index, named in error messages.
        max_episode_timesteps: Episode limit applied in the worker.
        context: ``'forkserver'`` (default) or ``'spawn'``.
        start_timeout: Seconds to wait for the worker to create its environment.
        wait: Wait for the worker here; if False, call ``wait_ready`` before use (lets many
            workers start at once).
        step_timeout: Seconds a ``reset`` or ``execute`` may take (None: no limit); a worker
            that misses it is killed and reported.
    """

    def __init__(
        self,
        environment: Any,
        index: int = 0,
        max_episode_timesteps: int | None = None,
        context: str = "forkserver",
        start_timeout: float = 120.0,
        wait: bool = True,
        step_timeout: float | None = None,
    ) -> None:
        super().__init__(None)
        if context not in _CONTEXTS:
            raise ConfigError(f"context: {context!r} is invalid; expected one of {_CONTEXTS}")
        check_step_timeout(step_timeout)
        blob = dump_spec(environment, index)
        self.step_timeout = step_timeout
        self._call = "start"
        self.index = index
        self._closed = False
        self._start_timeout = start_timeout
        ctx = multiprocessing.get_context(context)
        if context == "forkserver":
            ctx.set_forkserver_preload(["forceexp.environments"])
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker,
            args=(child, blob, max_episode_timesteps, os.getpid()),
            name=f"forceexp-env-{index}",
            daemon=True,
        )
        try:
            with main_hidden():
                self.process.start()
        finally:
            child.close()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the worker has created its environment and sent its specs."""
        try:
            kind, payload = self._wait(self._start_timeout)
            self._check(kind, payload)
        except BaseException:
            self.close()
            raise
        self._states_spec, self._actions_spec, self._remote_limit = payload

    def __repr__(self) -> str:
        return f"ProcessEnvironment(index={self.index}, pid={self.process.pid})"

    def fileno(self) -> int:
        """The pipe's file descriptor."""
        return self._conn.fileno()

    def _send(self, kind: str, meta: dict[str, Any], value: Any) -> None:
        self._call = kind
        try:
            self._conn.send((kind, meta["seed"] if kind == "reset" else value))
        except (OSError, ValueError):
            raise self._died() from None

    def _receive(self) -> tuple[dict[str, Any], Any]:
        kind, payload = self._wait(self.step_timeout)
        self._check(kind, payload)
        return payload

    def _wait(self, timeout: float | None) -> tuple[str, Any]:
        """Poll the pipe in short slices, checking the worker is alive between them."""
        waited = 0.0
        while not self._conn.poll(POLL_SECONDS):
            waited += POLL_SECONDS
            if not self.process.is_alive() and not self._conn.poll(0):
                raise self._died()
            if timeout is not None and waited >= timeout:
                pid = self.process.pid
                self.process.kill()  # a hung worker would never answer again
                self.close()
                raise RemoteEnvironmentError(
                    f"environments[{self.index}]: worker pid {pid} did not answer "
                    f"{self._call!r} within {timeout} s (the environment hangs); worker killed"
                )
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise self._died() from None

    def _died(self) -> RemoteEnvironmentError:
        self.process.join(timeout=1.0)
        return RemoteEnvironmentError(
            f"environments[{self.index}]: worker process pid {self.process.pid} died "
            f"({exit_cause(self.process.exitcode)})"
        )

    def _check(self, kind: str, payload: Any) -> None:
        if kind == "error":
            raise RemoteEnvironmentError(
                f"environments[{self.index}]: the worker's environment raised:\n{payload}"
            )

    def close(self) -> None:
        """Ask the worker to stop; terminate, then kill it if it does not exit."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process.is_alive():
                self._conn.send(("close", None))
        except (OSError, ValueError, AttributeError):
            pass
        self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()
