"""Start-up: seconds from launching ``python train.py`` to its first environment step.

What is timed: ``python train.py agent=<agent> env=cartpole`` with a 64-step budget, from just
before the process is started to the first call of ``Runner.run`` (which resets the
environments and takes the first step), recorded inside the process by a thin launcher that
wraps ``Runner.run`` and then runs ``train.py`` as ``__main__``. Two clocks:

- ``seconds_to_first_step``: wall-clock seconds since launch (what a user waits);
- ``cpu_seconds_to_first_step``: CPU seconds the process used until then (``process_time``),
  which other load on a shared machine barely changes.

``torch_import`` is the same pair for ``python -c "import torch"``, the floor of any command
that trains with torch; ``overhead`` is the CPU start-up minus that floor (what forceexp,
Hydra and Gymnasium add). Each figure is the fastest of ``--rounds`` runs (as ``timeit``: the
slower ones measure other load on the machine), all rounds listed in ``per_round``.

Prints one JSON line per figure. Usage:
``python benchmarks/startup.py [--agents ppo dqn] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = """
import atexit, functools, json, runpy, sys, time
from forceexp.execution.runner import Runner

marks, run = {}, Runner.run
@functools.wraps(run)  # keeps the signature experiment.py reads
def first_run(self, *args, **kwargs):
    marks.setdefault("wall", time.time())
    marks.setdefault("cpu", time.process_time())
    return run(self, *args, **kwargs)
Runner.run = first_run
atexit.register(lambda: print("STARTUP " + json.dumps(marks), flush=True))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
TORCH = """
import json, time, torch
print("STARTUP " + json.dumps({"wall": time.time(), "cpu": time.process_time()}), flush=True)
"""


def emit(figure: str, values: list[float], **extra: str) -> None:
    """Print the fastest of ``values`` (seconds) as one JSON line."""
    line = {"benchmark": "startup", "framework": "forceexp", "figure": figure, **extra}
    line |= {"value": round(min(values), 3), "unit": "s"}
    line["per_round"] = [round(v, 3) for v in values]
    print(json.dumps(line), flush=True)


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds from launching ``python <args>`` to its ``STARTUP`` mark."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    start = time.time()
    done = subprocess.run(
        [sys.executable, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("STARTUP "))
    marks = json.loads(line.removeprefix("STARTUP "))
    return marks["wall"] - start, marks["cpu"]


def first_step(agent: str) -> tuple[float, float]:
    """Wall and CPU seconds from launching train.py to its first ``Runner.run``."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"agent={agent}", "env=cartpole", "runner.num_timesteps=64"]
        overrides += ["eval_episodes=1", f"hydra.run.dir={folder}"]
        return timed(["-c", LAUNCHER, str(ROOT / "train.py"), *overrides])


def main() -> None:
    """Time each agent's start-up and the torch import floor; print the fastest rounds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", nargs="+", default=["ppo", "dqn"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    floor = [timed(["-c", TORCH]) for _ in range(args.rounds)]
    emit("torch_import", [wall for wall, _ in floor])
    emit("cpu_torch_import", [cpu for _, cpu in floor])
    for agent in args.agents:
        runs = [first_step(agent) for _ in range(args.rounds)]
        emit("seconds_to_first_step", [wall for wall, _ in runs], agent=agent)
        emit("cpu_seconds_to_first_step", [cpu for _, cpu in runs], agent=agent)
        cpu_floor = min(cpu for _, cpu in floor)
        emit("overhead", [cpu - cpu_floor for _, cpu in runs], agent=agent)


if __name__ == "__main__":
    main()
