"""Training speed on CartPole-v1 with PPOAgent's defaults (Python API): steps/s, seconds to solve.

Prints one JSON line per figure. Usage: python benchmarks/train_cartpole.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from forceexp import Runner
from forceexp.execution.milestones import ReturnThreshold

TIMESTEPS = 100_000


def run(seed: int) -> dict[str, float]:
    runner = Runner(
        agent={
            "agent": "ppo",
            "seed": seed,
            "device": "cpu",
            "lr_schedule": "linear",
            "clip_schedule": "linear",
            "schedule_timesteps": TIMESTEPS,
        },
        environment="CartPole-v1",
        num_parallel=8,
        seed=seed,
    )
    solve = ReturnThreshold(475.0)  # its clock starts now
    runner.run(num_timesteps=TIMESTEPS, callback=solve, use_tqdm=False)
    wall = time.perf_counter() - solve.start
    evaluation = runner.evaluate(num_episodes=20)
    runner.close()
    return {
        "wall_seconds": wall,
        "steps_per_second": TIMESTEPS / wall,
        "seconds_to_475": float("nan") if solve.seconds is None else solve.seconds,
        "timesteps_to_475": float("nan") if solve.timesteps is None else solve.timesteps,
        "eval_return_mean": evaluation["return_mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in range(args.seeds):
        for name, value in run(seed).items():
            print(
                json.dumps(
                    {
                        "benchmark": "train_cartpole",
                        "framework": "forceexp",
                        "seed": seed,
                        "figure": name,
                        "value": round(value, 3),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
