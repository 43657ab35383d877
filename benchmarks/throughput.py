"""Rollout steps/s without updates: batched runner vs the environment alone (the ceiling).

What is timed:
- ``env``: the environment alone with uniformly random actions. Gymnasium CartPole-v1: N
  ``gymnasium.make`` copies stepped in a Python loop (reset when an episode ends); vectorised:
  ``CartPoleVectorized`` (``execute`` + ``reset_where``).
- ``runner``: ``Runner.run(num_timesteps=..., evaluation=True)`` with the default PPO agent:
  per step one batched ``agent.act(independent=True, deterministic=True)`` through the policy
  network, the environment step(s) and the runner's bookkeeping; no ``observe`` and no update.
  Gymnasium CartPole-v1 goes through the batched loop over N environment objects, the vectorised
  CartPole through the vectorised loop (one ``execute`` for all N). Gymnasium sizes stop at
  256 by default: its cost per environment step is flat in N, larger N only takes longer.
- ``gym_vector_<mode>``: Gymnasium's own vector CartPole-v1 (``gymnasium.make_vec``, modes
  ``sync`` and ``vector_entry_point``, i.e. ``CartPoleVectorEnv``): ``env`` alone (random
  actions, Gymnasium's autoreset) and ``runner`` through ``GymVectorEnvironment`` and the
  vectorised loop, beside ``vectorized_cartpole`` (the project's own) at the same N.
- ``fraction_of_env``: runner steps/s over env steps/s, the share of the ceiling kept.
- At the last vectorised N (1024 by default): the runner's step time split into ``act``
  (``agent.act``), ``env`` (``execute`` + ``reset_where``) and ``loop`` (the rest: the runner's
  bookkeeping), timed inside the loop of a separate run (``total``: its whole step).

Prints one JSON line per figure. Usage:
``python benchmarks/throughput.py [--seconds 1.0] [--gym-sizes 1 8 64 256]
[--vectorized-sizes 1 8 64 256 1024] [--gym-vector-sizes 8 64 256 1024]
[--gym-vector-modes sync vector_entry_point]``
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


def gym_vector_env_rate(mode: str, count: int, seconds: float) -> float:
    """``gymnasium.make_vec('CartPole-v1', N, vectorization_mode=mode)``, random actions."""
    env = gymnasium.make_vec("CartPole-v1", num_envs=count, vectorization_mode=mode)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, (64, count))

    def step(calls: int) -> int:
        for i in range(calls):
            env.step(actions[i % 64])
        return calls * count

    try:
        return rate(step, seconds)
    finally:
        env.close()


def runner_rate(environment: object, count: int, seconds: float) -> float:
    """``Runner.run(evaluation=True)`` steps/s (policy acts, no observe, no update)."""
    vectorized = isinstance(environment, dict | gymnasium.vector.VectorEnv)
    runner = Runner(
        agent=dict(AGENT),
        environment=environment,
        num_parallel=None if vectorized else count,
        seed=0,
    )

    def step(calls: int) -> int:
        runner.run(num_timesteps=calls * count, evaluation=True, use_tqdm=False)
        return runner.timesteps  # each run counts its own timesteps

    try:
        return rate(lambda calls: step(max(1, calls * 20)), seconds)
    finally:
        runner.close()


def step_split(count: int, seconds: float) -> dict[str, float]:
    """Microseconds per vectorised runner step in ``agent.act``, the environment and the rest.

    Times ``agent.act`` and the environment's ``execute``/``reset_where`` inside the loop (each
    wrapped with a timer); ``loop`` is what remains of the step: the runner's own work.
    """
    runner = Runner(
        agent=dict(AGENT),
        environment={"environment": "cartpole_vectorized", "num_environments": count},
        seed=0,
    )
    spent = {"act": 0.0, "env": 0.0}

    def timed(part: str, function: Callable) -> Callable:
        def call(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            out = function(*args, **kwargs)
            spent[part] += time.perf_counter() - start
            return out

        return call

    runner.agent.act = timed("act", runner.agent.act)
    runner.vectorized.execute = timed("env", runner.vectorized.execute)
    runner.vectorized.reset_where = timed("env", runner.vectorized.reset_where)
    runner.run(num_timesteps=count * 20, evaluation=True, use_tqdm=False)  # warm-up
    steps = max(20, round(seconds * 1e6 / 1000))  # about ``seconds`` at 1 ms per step
    spent.update(act=0.0, env=0.0)
    start = time.perf_counter()
    runner.run(num_timesteps=count * steps, evaluation=True, use_tqdm=False)
    total = time.perf_counter() - start
    runner.close()
    split = {part: value / steps * 1e6 for part, value in spent.items()}
    split["total"] = total / steps * 1e6
    split["loop"] = split["total"] - split["act"] - split["env"]
    return split


def main() -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per figure")
    parser.add_argument("--gym-sizes", nargs="*", type=int, default=[1, 8, 64, 256])
    parser.add_argument("--vectorized-sizes", nargs="+", type=int, default=[1, 8, 64, 256, 1024])
    parser.add_argument("--gym-vector-sizes", nargs="*", type=int, default=[8, 64, 256, 1024])
    parser.add_argument("--gym-vector-modes", nargs="*", default=["sync", "vector_entry_point"])
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
    for part, value in step_split(count, args.seconds).items():  # the last (largest) N
        emit(f"vectorized_cartpole_n{count}_step_{part}", value, "us")
    gym_vector(args.gym_vector_modes, args.gym_vector_sizes, args.seconds)


def gym_vector(modes: list[str], sizes: list[int], seconds: float) -> None:
    """Figures for Gymnasium's vector CartPole (each mode, each N)."""
    for mode in modes:
        for count in sizes:
            env = gym_vector_env_rate(mode, count, seconds)
            vec = gymnasium.make_vec("CartPole-v1", num_envs=count, vectorization_mode=mode)
            ours = runner_rate(vec, count, seconds)
            emit(f"gym_vector_{mode}_cartpole_n{count}_env", env, "steps/s", "gymnasium")
            emit(f"gym_vector_{mode}_cartpole_n{count}_runner", ours, "steps/s")
            emit(f"gym_vector_{mode}_cartpole_n{count}_fraction_of_env", ours / env, "ratio")


if __name__ == "__main__":
    main()
