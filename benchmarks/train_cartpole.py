"""Training speed on CartPole-v1 with the default PPO config: steps/s and seconds to solve.

Prints one JSON line per figure. Usage: python benchmarks/train_cartpole.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from forceexp import Runner

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
    start = time.perf_counter()
    solved = {"seconds": float("nan"), "timesteps": float("nan")}

    def callback(r: Runner, _: int) -> bool:
        recent = r.episode_returns[-100:]
        if np.isnan(solved["seconds"]) and len(recent) == 100 and np.mean(recent) >= 475:
            solved.update(seconds=time.perf_counter() - start, timesteps=r.timesteps)
        return True

    runner.run(num_timesteps=TIMESTEPS, callback=callback, use_tqdm=False)
    wall = time.perf_counter() - start
    evaluation = runner.evaluate(num_episodes=20)
    runner.close()
    return {
        "wall_seconds": wall,
        "steps_per_second": TIMESTEPS / wall,
        "seconds_to_475": solved["seconds"],
        "timesteps_to_475": solved["timesteps"],
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
