"""Latency of one act() for a single CartPole observation, and batched act throughput.

Ours (``framework: forceexp``) against Stable-Baselines3 (``framework: sb3``, skipped with a
note on stderr when the ``[bench]`` extra is missing) for the same policy size (tanh 2x64 MLP,
separate value MLP). Comparable figures share a name; ``call`` says what was timed. Prints one
JSON line per figure. Usage: python benchmarks/act_latency.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from forceexp import Agent

ENV = "CartPole-v1"
SIZES = (8, 64, 1024)


def median_us(fn: Callable[[], Any], calls: int) -> float:
    """Median wall time of ``fn()`` in microseconds over ``calls`` calls (after 200 warm-ups)."""
    for _ in range(200):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6)


def emit(framework: str, figure: str, value: float, unit: str, call: str) -> None:
    line = {
        "benchmark": "act_latency",
        "framework": framework,
        "figure": figure,
        "value": round(value, 2),
        "unit": unit,
        "call": call,
    }
    print(json.dumps(line), flush=True)


def batches() -> dict[int, np.ndarray]:
    """One fixed batch of CartPole-shaped observations per size in ``SIZES``."""
    return {n: np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32) for n in SIZES}


def measure_ours(obs: np.ndarray, calls: int) -> None:
    """Single-observation act (independent, and act+observe) and batched act of our PPO."""
    agent = Agent.create("ppo", environment=ENV, device="cpu", seed=0)
    emit(
        "forceexp",
        "act_independent_deterministic",
        median_us(lambda: agent.act(obs, independent=True, deterministic=True), calls),
        "us",
        "agent.act(obs, independent=True, deterministic=True)",
    )

    def act_observe() -> None:
        agent.act(obs)
        agent.observe(reward=1.0, terminal=0)

    emit(
        "forceexp",
        "act_observe_stochastic",
        median_us(act_observe, calls),
        "us",
        "agent.act(obs); agent.observe(reward=1.0, terminal=0)",
    )
    for size, batch in batches().items():
        slots = np.zeros(size, dtype=np.int64)
        us = median_us(
            lambda b=batch, s=slots: agent.act(b, parallel=s, independent=True),
            max(100, calls // 10),
        )
        call = f"agent.act(obs[{size}, 4], parallel=slots, independent=True)"
        emit("forceexp", f"batched_act_n{size}", size / us * 1e6, "samples/s", call)
    agent.close()


def measure_sb3(obs: np.ndarray, calls: int) -> None:
    """SB3 ``predict`` (single and batched) and its policy network called directly in torch."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(ENV, n_envs=1, seed=0)
    net_arch = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh}
    model = PPO("MlpPolicy", env, policy_kwargs=net_arch, device="cpu", seed=0)
    emit(
        "sb3",
        "act_independent_deterministic",
        median_us(lambda: model.predict(obs, deterministic=True), calls),
        "us",
        "model.predict(obs, deterministic=True)",
    )

    def forward() -> None:
        with torch.no_grad():
            model.policy(torch.as_tensor(obs)[None], deterministic=True)

    emit(
        "sb3",
        "policy_forward_no_grad",
        median_us(forward, calls),
        "us",
        "model.policy(torch.as_tensor(obs)[None], deterministic=True) under no_grad",
    )
    policy = model.policy

    def actor() -> None:
        with torch.no_grad():
            policy.action_net(policy.mlp_extractor.forward_actor(torch.as_tensor(obs)[None]))

    emit(
        "sb3",
        "actor_mlp_no_grad",
        median_us(actor, calls),
        "us",
        "policy.action_net(policy.mlp_extractor.forward_actor(obs[None])): logits only",
    )
    for size, batch in batches().items():
        us = median_us(lambda b=batch: model.predict(b), max(100, calls // 10))
        call = f"model.predict(obs[{size}, 4])"
        emit("sb3", f"batched_act_n{size}", size / us * 1e6, "samples/s", call)
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs = np.random.default_rng(0).normal(size=4).astype(np.float32)
    measure_ours(obs, args.calls)
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        print(
            "stable_baselines3 not installed (pip install -e .[bench]); SB3 skipped",
            file=sys.stderr,
        )
        return
    measure_sb3(obs, args.calls)


if __name__ == "__main__":
    main()
