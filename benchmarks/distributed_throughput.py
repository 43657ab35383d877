"""Steps/s of PPO (or DQN) training with 1, 2, 4 Ray rollout workers on CartPole (JSON lines).

``python benchmarks/distributed_throughput.py --workers 1 2 4 --envs-per-worker 4 --rounds 20``
(``--agent dqn``: asynchronous replay workers, one line per worker count with the learner's
seconds per delivery, replay and training included).
Each line: workers, environments, steps/s of the whole loop (collect + update), per-worker
collection steps/s, seconds per round spent collecting (broadcast, rollouts back) and updating,
and the bytes that cross the network per round (weights out to each worker, rollouts back).
A local Ray instance on 127.0.0.1 is started once (needs the ``ray`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from forceexp import Agent
from forceexp.environments.ray_remote import init_ray
from forceexp.execution.distributed import DistributedRunner

AGENT = {"agent": "ppo", "rollout_length": 32, "minibatch_size": 256, "epochs": 10}


def measure(workers: int, per_worker: int, rounds: int) -> dict[str, Any]:
    """Train ``rounds`` rollouts (after one warm-up round) with ``workers`` workers."""
    agent = Agent.create(AGENT, environment="CartPole-v1", seed=0)
    runner = DistributedRunner(agent, "CartPole-v1", workers, per_worker, seed=0)
    try:
        per_round = AGENT["rollout_length"] * workers * per_worker
        runner.run(num_timesteps=per_round, use_tqdm=False)  # warm-up: actors, first imports
        start = time.perf_counter()
        runner.run(num_timesteps=rounds * per_round, use_tqdm=False)
        seconds = time.perf_counter() - start
        history = runner.history[-rounds:]
    finally:
        runner.close()
        agent.close()
    worker_rates = [
        steps / max(sec, 1e-9)
        for h in history
        for steps, sec in zip(h["worker_steps"], h["worker_seconds"], strict=True)
    ]
    return {
        "workers": workers,
        "envs": workers * per_worker,
        "steps_per_second": runner.timesteps / seconds,  # this run only
        "worker_steps_per_second": statistics.median(worker_rates),
        "collect_seconds_per_round": statistics.median(h["collect_seconds"] for h in history),
        "update_seconds_per_round": statistics.median(h["update_seconds"] for h in history),
        "weights_bytes_per_worker": history[-1]["weights_bytes"],
        "rollout_bytes_per_worker": history[-1]["rollout_bytes"][0],
        "rows_per_update": per_round,
    }


DQN = {"agent": "dqn", "learning_starts": 100, "train_freq": 4, "gradient_steps": 1}
STEPS_PER_ROUND = 16


def measure_dqn(workers: int, per_worker: int, rounds: int) -> dict[str, Any]:
    """Train DQN for ``rounds`` deliveries per worker (after a warm-up), workers asynchronous."""
    agent = Agent.create(
        DQN, environment="CartPole-v1", seed=0, parallel_interactions=workers * per_worker
    )
    runner = DistributedRunner(
        agent, "CartPole-v1", workers, per_worker, seed=0, steps_per_round=STEPS_PER_ROUND
    )
    try:
        per_round = STEPS_PER_ROUND * workers * per_worker
        runner.run(num_timesteps=per_round, use_tqdm=False)  # warm-up: actors, first imports
        start = time.perf_counter()
        runner.run(num_timesteps=rounds * per_round, use_tqdm=False)
        seconds = time.perf_counter() - start
        history = runner.history[-rounds * workers :]
    finally:
        runner.close()
        agent.close()
    return {
        "agent": "dqn",
        "workers": workers,
        "envs": workers * per_worker,
        "steps_per_second": runner.timesteps / seconds,
        "worker_steps_per_second": statistics.median(
            h["worker_steps"][0] / max(h["worker_seconds"][0], 1e-9) for h in history
        ),
        "learner_seconds_per_delivery": statistics.median(h["update_seconds"] for h in history),
        "weights_bytes_per_delivery": history[-1]["weights_bytes"],
        "transitions_bytes_per_delivery": history[-1]["rollout_bytes"][0],
        "steps_per_delivery": STEPS_PER_ROUND * per_worker,
    }


def main() -> None:
    """Parse arguments and print one JSON line per worker count."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--envs-per-worker", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--agent", choices=["ppo", "dqn"], default="ppo")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local instance")
    args = parser.parse_args()
    torch.set_num_threads(1)
    init_ray(**({} if args.num_cpus is None else {"num_cpus": args.num_cpus}))
    for workers in args.workers:
        run = measure_dqn if args.agent == "dqn" else measure
        print(json.dumps(run(workers, args.envs_per_worker, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
