"""Our SAC against Stable-Baselines3 SAC on Pendulum-v1 at RL-Zoo settings: env steps per second.

Both train with the same hyperparameters (``conf/tuning/sac_pendulum.yaml``: learning rate
1e-3, 256x256 relu actor and critics, batch 256, one gradient step per env step, buffer 1e6,
tau 0.005, gamma 0.99, learned entropy coefficient), one env, one process, one torch thread
for all (``--threads``; ``--sb3-threads 0`` gives SB3 torch's default, one per core, as it runs
out of the box, while ours keeps its own default of one). Each framework first runs
``--warmup`` steps (past ``learning_starts`` and a full batch, so every timed step trains),
then rounds alternate: ours on the fast path, ours on the autograd path
(``fast_update=False``), SB3, each timing ``--timesteps`` steps.

Prints one JSON line per figure: median env steps per second of each, and the ratios.
Needs the ``[bench]`` extra.

Usage: python benchmarks/sac_pendulum.py [--rounds 3] [--timesteps 1000] [--threads 1]
    [--sb3-threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from stable_baselines3 import SAC

from forceexp import Runner

ENV = "Pendulum-v1"
NET = {"type": "auto", "size": 256, "depth": 2, "activation": "relu"}
OURS = {
    "agent": "sac",
    "network": NET,
    "critic": NET,
    "learning_rate": 1e-3,
    "batch_size": 256,
    "learning_starts": 100,
    "memory": 1_000_000,
    "torch_threads": None,  # the benchmark sets the threads for everyone
}


def emit(framework: str, figure: str, value: float, unit: str) -> None:
    line = {"benchmark": "sac_pendulum", "framework": framework, "figure": figure}
    print(json.dumps({**line, "value": round(value, 3), "unit": unit}), flush=True)


def ours(fast: bool, warmup: int) -> Callable[[int], None]:
    runner = Runner(agent={**OURS, "fast_update": fast}, environment=ENV, num_parallel=1, seed=0)
    runner.run(num_timesteps=warmup, use_tqdm=False)

    def run(steps: int) -> None:
        runner.run(num_timesteps=steps, use_tqdm=False)

    return run


def sb3(warmup: int) -> Callable[[int], None]:
    model = SAC("MlpPolicy", ENV, learning_rate=1e-3, seed=0, device="cpu")  # zoo = defaults
    model.learn(warmup)

    def run(steps: int) -> None:
        model.learn(steps, reset_num_timesteps=False)

    return run


def with_threads(count: int, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` with ``count`` torch threads, then the previous count again."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return call(*args)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=1000, help="env steps timed per round")
    parser.add_argument("--warmup", type=int, default=300, help="env steps before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for all")
    parser.add_argument("--sb3-threads", type=int, help="for SB3 only (0: torch's default)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    sb3_threads = args.threads if args.sb3_threads is None else args.sb3_threads
    threads = {"sb3": sb3_threads or default_threads}
    torch.set_num_threads(args.threads)
    runs = {
        "forceexp": ours(True, args.warmup),
        "forceexp-autograd": ours(False, args.warmup),
        "sb3": with_threads(threads["sb3"], sb3, args.warmup),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    for r in range(args.rounds):
        for name, run in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            with_threads(threads.get(name, args.threads), run, args.timesteps)
            rates[name].append(args.timesteps / (time.perf_counter() - start))
    medians = {name: float(np.median(values)) for name, values in rates.items()}
    for name, median in medians.items():
        emit(name, "steps_per_second", median, "steps/s")
    emit("sb3", "torch_threads", threads["sb3"], "threads")
    emit("forceexp/sb3", "steps_per_second_ratio", medians["forceexp"] / medians["sb3"], "x")
    fast_ratio = medians["forceexp"] / medians["forceexp-autograd"]
    emit("forceexp/forceexp-autograd", "steps_per_second_ratio", fast_ratio, "x")


if __name__ == "__main__":
    main()
