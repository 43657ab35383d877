"""Worker processes: a hung environment is reported within the step timeout, and killing the
runner (SIGKILL) while a worker hangs leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from forceexp import Environment, Runner
from forceexp.environments.multiprocessing import ProcessEnvironment
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.environments.testing import HangingEnvironment
from forceexp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
AGENT = {"agent": "random", "seed": 0}


def test_hung_execute_is_reported_within_the_timeout() -> None:
    runner = Runner(
        agent=AGENT,
        environments=[
            {"environment": HangingEnvironment, "hang_at": 1_000_000},
            {"environment": HangingEnvironment, "hang_at": 3},
        ],
        remote="multiprocessing",
        step_timeout=1.0,
    )
    hung = runner.environments[1]
    start = time.monotonic()
    with pytest.raises(
        RemoteEnvironmentError,
        match=r"environments\[1\]: worker pid \d+ did not answer 'execute' within 1.0 s",
    ):
        runner.run(num_timesteps=50, batch_agent_calls=True, use_tqdm=False)
    assert time.monotonic() - start < 5.0
    assert not hung.process.is_alive()
    runner.close()


def test_hung_reset_is_reported() -> None:
    env = Environment.create(
        {"environment": HangingEnvironment, "hang_at": 0},
        remote="multiprocessing",
        step_timeout=0.5,
    )
    with pytest.raises(RemoteEnvironmentError, match=r"did not answer 'reset' within 0.5 s"):
        env.reset()
    env.close()


@pytest.mark.parametrize("bad", [0, -1, "two", True])
def test_bad_step_timeout(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"step_timeout: .* is invalid; expected a number"):
        ProcessEnvironment("CartPole-v1", step_timeout=bad)  # type: ignore[arg-type]


KILLED_RUNNER = textwrap.dedent(
    """
    import os, sys
    from forceexp import Runner
    from forceexp.environments.testing import HangingEnvironment

    runner = Runner(
        agent={agent!r},
        environments=[{{"environment": HangingEnvironment, "hang_at": 2}}] * 2,
        remote="multiprocessing",
    )
    print(" ".join(str(env.process.pid) for env in runner.environments), flush=True)
    runner.run(num_timesteps=100, batch_agent_calls=True, use_tqdm=False)  # hangs
    """
)


def children_of(pid: int) -> set[int]:
    """PIDs of the process tree under ``pid`` (from /proc)."""
    found, frontier = set(), {pid}
    while frontier:
        parent = frontier.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        kids = {int(k) for k in path.read_text().split()} if path.exists() else set()
        frontier |= kids - found
        found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_runner_leaves_no_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUNNER.format(agent=AGENT)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        workers = {int(p) for p in process.stdout.readline().split()}
        assert len(workers) == 2
        time.sleep(1.0)  # the workers hang in execute by now
        tree = children_of(process.pid)  # forkserver, resource tracker, workers
        assert workers <= tree
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in tree):
        time.sleep(0.2)
    left = sorted(pid for pid in tree if alive(pid))
    assert not left, f"processes outlived the killed runner: {left}"
