"""Cost of one PPO update (20 epochs over a 256-row rollout, the RL-Zoo CartPole setting).

Times, in one process and alternating rounds: our update on the hand-derived fast path, our
update with ``fast_update=False`` (autograd), and Stable-Baselines3's ``PPO.train()`` on a filled
rollout buffer of the same size (skipped with a note on stderr without the ``[bench]`` extra).
All use a tanh 2x64 policy MLP and a separate 2x64 value MLP, Adam and gradient clipping.
Prints one JSON line per figure: median milliseconds per update, and gradient steps per second.

Usage: python benchmarks/update_step.py [--rounds 7] [--updates 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from forceexp import Agent
from forceexp.core.buffers import Batch

ENV, ROWS, EPOCHS = "CartPole-v1", 256, 20


def emit(framework: str, figure: str, value: float, unit: str) -> None:
    line = {"benchmark": "update_step", "framework": framework, "figure": figure}
    print(json.dumps({**line, "value": round(value, 3), "unit": unit}), flush=True)


def rollout(agent: Agent, rng: np.random.Generator) -> Batch:
    """A 256-row rollout: random CartPole-like states, the policy's own actions and values."""
    states = {"state": torch.as_tensor(rng.normal(size=(ROWS, 4)), dtype=torch.float32)}
    with torch.no_grad():
        actions, log_prob, value = agent.policy.act(states, {}, deterministic=False)
    advantages = torch.as_tensor(rng.normal(size=ROWS), dtype=torch.float32)
    return Batch(states, {}, actions, log_prob, value, advantages, value + advantages)


def ours(fast: bool) -> Callable[[], None]:
    agent = Agent.create(
        "ppo",
        environment=ENV,
        device="cpu",
        seed=0,
        rollout_length=32,
        minibatch_size=ROWS,
        epochs=EPOCHS,
        fast_update=fast,
    )
    assert (agent._fused is not None) == fast
    batch = rollout(agent, np.random.default_rng(0))
    return lambda: agent._update_batch(batch)


def sb3() -> Callable[[], None] | None:
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        print(
            "update_step: stable-baselines3 missing, skipping it ([bench] extra)", file=sys.stderr
        )
        return None
    env = make_vec_env(ENV, n_envs=8, seed=0)
    model = PPO(
        "MlpPolicy", env, n_steps=32, batch_size=ROWS, n_epochs=EPOCHS, seed=0, device="cpu"
    )
    model.learn(ROWS)  # fills the rollout buffer (and trains once)
    return model.train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=10, help="updates timed per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = {"forceexp": ours(True), "forceexp-autograd": ours(False)}
    peer = sb3()
    if peer is not None:
        runs["sb3"] = peer
    times: dict[str, list[float]] = {name: [] for name in runs}
    for update in runs.values():  # warm-up
        update()
    for _ in range(args.rounds):
        for name, update in runs.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                update()
            times[name].append((time.perf_counter() - start) / args.updates)
    for name, seconds in times.items():
        median = float(np.median(seconds))
        emit(name, "ms_per_update", median * 1e3, "ms")
        emit(name, "gradient_steps_per_second", EPOCHS / median, "steps/s")
    if peer is not None:
        ratio = np.median(times["sb3"]) / np.median(times["forceexp"])
        emit("forceexp/sb3", "update_speedup", float(ratio), "x")


if __name__ == "__main__":
    main()
