"""Rollout steps/s without updates: batched runner vs the environment alone (the ceiling).

What is timed:
- ``env``: the environment alone with uniformly random actions. Gymnasium CartPole-v1: N
  ``gymnasium.make`` copies stepped in a Python loop (reset when an episode ends); vectorised:
  ``CartPoleVectorized`` (``execute`` + ``reset_where``).
- ``runner``: ``Runner.run(num_timesteps=..., evaluation=True)`` with the default PPO agent:
  per step one batched ``agent.act(independent=True, deterministic=True)`` through the policy
  network, the environment step(s) and the runner's bookkeeping; no ``observe`` and no update.
  Gymnasium CartPole-v1 goes through the batched loop over N environment objects, the vectorised
  CartPole through the vectorised loop (one ``execute`` for all N).
- ``fraction_of_env``: runner steps/s over env steps/s, the share of the ceiling kept.
- At the last vectorised N (1024 by default): the step time split into ``act`` (``agent.act``
  alone on a batch), ``env`` (from the ceiling) and ``loop`` (the rest: runner bookkeeping).

Prints one JSON line per figure. Usage:
``python benchmarks/throughput.py [--seconds 1.0] [--gym-sizes 1 8 64 256]
[--vectorized-sizes 1 8 64 256 1024]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import gymnasium
import numpy as np
import torch

from forceexp import Runner
from forceexp.environments.classic_control import CartPoleVectorized

AGENT = {"agent": "ppo", "device": "cpu", "seed": 0}


def emit(figure: str, value: float, unit: str, framework: str = "forceexp") -> None:
    """Print one figure as a JSON line."""
    line = {
        "benchmark": "throughput",
        "framework": framework,
        "figure": figure,
        "value": round(value, 3),
        "unit": unit,
    }
    print(json.dumps(line), flush=True)


def rate(step: Callable[[int], int], seconds: float) -> float:
    """Steps/s of ``step(calls) -> steps taken``: a warm-up, then calls sized to ``seconds``."""
    start = time.perf_counter()
    steps = step(1)
    estimate = steps / max(time.perf_counter() - start, 1e-9)
    calls = max(1, round(estimate * seconds / max(steps, 1)))
    start = time.perf_counter()
    steps = step(calls)
    return steps / (time.perf_counter() - start)


def gym_env_rate(count: int, seconds: float) -> float:
    """N Gymnasium CartPole-v1 environments stepped in a Python loop, random actions."""
    envs = [gymnasium.make("CartPole-v1", disable_env_checker=True) for _ in range(count)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    rng = np.random.default_rng(0)

    def step(calls: int) -> int:
        for _ in range(calls):
            for env, action in zip(envs, rng.integers(0, 2, count).tolist(), strict=True):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
        return calls * count

    return rate(lambda calls: step(max(1, calls * 200 // count)), seconds)


def vectorized_env_rate(count: int, seconds: float) -> float:
    """``CartPoleVectorized`` with N sub-environments, random actions."""
    env = CartPoleVectorized(count)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (64, count))

    def step(calls: int) -> int:
        for i in range(calls):
            _, terminals, _ = env.execute(actions[i % 64])
            env.reset_where(terminals > 0)
        return calls * count

    return rate(step, seconds)


def runner_rate(environment: object, count: int, seconds: float) -> float:
    """``Runner.run(evaluation=True)`` steps/s (policy acts, no observe, no update)."""
    vectorized = isinstance(environment, dict)
    runner = Runner(
        agent=dict(AGENT),
        environment=environment,
        num_parallel=None if vectorized else count,
        seed=0,
    )

    def step(calls: int) -> int:
        before = runner.timesteps
        runner.run(num_timesteps=calls * count, evaluation=True, use_tqdm=False)
        return runner.timesteps - before

    try:
        return rate(lambda calls: step(max(1, calls * 20)), seconds)
    finally:
        runner.close()


def act_us(count: int, calls: int = 200) -> float:
    """Median microseconds of one batched independent deterministic ``agent.act``."""
    runner = Runner(
        agent=dict(AGENT),
        environment={"environment": "cartpole_vectorized", "num_environments": count},
    )
    states = runner.vectorized.reset(seed=0)
    slots = np.arange(count)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        runner.agent.act(states, parallel=slots, independent=True, deterministic=True)
        times[i] = time.perf_counter() - start
    runner.close()
    return float(np.median(times[calls // 10 :]) * 1e6)


def main() -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per figure")
    parser.add_argument("--gym-sizes", nargs="+", type=int, default=[1, 8, 64, 256])
    parser.add_argument("--vectorized-sizes", nargs="+", type=int, default=[1, 8, 64, 256, 1024])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for count in args.gym_sizes:
        env = gym_env_rate(count, args.seconds)
        ours = runner_rate("CartPole-v1", count, args.seconds)
        emit(f"gym_cartpole_n{count}_env", env, "steps/s", "gymnasium")
        emit(f"gym_cartpole_n{count}_runner", ours, "steps/s")
        emit(f"gym_cartpole_n{count}_fraction_of_env", ours / env, "ratio")
    for count in args.vectorized_sizes:
        env = vectorized_env_rate(count, args.seconds)
        spec = {"environment": "cartpole_vectorized", "num_environments": count}
        ours = runner_rate(spec, count, args.seconds)
        emit(f"vectorized_cartpole_n{count}_env", env, "steps/s", "numpy")
        emit(f"vectorized_cartpole_n{count}_runner", ours, "steps/s")
        emit(f"vectorized_cartpole_n{count}_fraction_of_env", ours / env, "ratio")
    step, env_step = count / ours * 1e6, count / env * 1e6  # the last (largest) N
    act = act_us(count)
    emit(f"vectorized_cartpole_n{count}_step", step, "us")
    emit(f"vectorized_cartpole_n{count}_act", act, "us")
    emit(f"vectorized_cartpole_n{count}_env_step", env_step, "us")
    emit(f"vectorized_cartpole_n{count}_loop", step - act - env_step, "us")


if __name__ == "__main__":
    main()
