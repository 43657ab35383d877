"""Start-up: seconds from launching ``python train.py`` to its first environment step.

What is timed: ``python train.py agent=<agent> env=cartpole`` with a 64-step budget, from just
before the process is started to the timestamp of its ``Training for ...`` log line in
``train.log`` (written right before ``Runner.run`` resets the environments and takes the first
step; millisecond timestamps). ``torch_import`` times ``python -c "import torch"`` the same way
(process start to exit), the floor of any command that trains with torch; ``overhead`` is the
start-up minus that floor. Each figure is the fastest of ``--rounds`` runs (as ``timeit``: the
slower ones measure other load on the machine), all rounds listed in ``per_round``.

Prints one JSON line per figure. Usage:
``python benchmarks/startup.py [--agents ppo dqn] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "Training for "


def emit(figure: str, values: list[float], **extra: str) -> None:
    """Print the fastest of ``values`` (seconds) as one JSON line."""
    line = {"benchmark": "startup", "framework": "forceexp", "figure": figure, **extra}
    line |= {"value": round(min(values), 3), "unit": "s"}
    line["per_round"] = [round(v, 3) for v in values]
    print(json.dumps(line), flush=True)


def torch_import() -> float:
    """Seconds to start Python, import torch and exit."""
    start = time.time()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.time() - start


def first_step(agent: str) -> float:
    """Seconds from launching train.py to its ``Training for`` log line."""
    with tempfile.TemporaryDirectory() as folder:
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            f"agent={agent}",
            "env=cartpole",
            "runner.num_timesteps=64",
            "eval_episodes=1",
            f"hydra.run.dir={folder}",
        ]
        start = time.time()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        for line in (Path(folder) / "train.log").read_text().splitlines():
            if MARK in line:
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
                return stamp.timestamp() - start
    raise RuntimeError(f"train.py logged no {MARK!r} line")


def main() -> None:
    """Time each agent's start-up and the torch import floor; print the fastest rounds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", nargs="+", default=["ppo", "dqn"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    floor = [torch_import() for _ in range(args.rounds)]
    emit("torch_import", floor)
    for agent in args.agents:
        seconds = [first_step(agent) for _ in range(args.rounds)]
        emit("seconds_to_first_step", seconds, agent=agent)
        emit("overhead", [s - min(floor) for s in seconds], agent=agent)


if __name__ == "__main__":
    main()
