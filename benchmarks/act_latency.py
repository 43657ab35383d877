"""Latency of one act() for a single CartPole observation, and batched act throughput.

Prints one JSON line per figure. Usage: python benchmarks/act_latency.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from forceexp import Agent


def median_us(fn, calls: int) -> float:
    for _ in range(200):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6)


def emit(figure: str, value: float, unit: str) -> None:
    print(
        json.dumps(
            {
                "benchmark": "act_latency",
                "framework": "forceexp",
                "figure": figure,
                "value": round(value, 2),
                "unit": unit,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = Agent.create("ppo", environment="CartPole-v1", device="cpu", seed=0)
    obs = np.random.default_rng(0).normal(size=4).astype(np.float32)
    emit(
        "act_independent_deterministic",
        median_us(lambda: agent.act(obs, independent=True, deterministic=True), args.calls),
        "us",
    )

    def act_observe() -> None:
        agent.act(obs)
        agent.observe(reward=1.0, terminal=0)

    emit("act_observe_stochastic", median_us(act_observe, args.calls), "us")
    for size in (8, 64, 1024):
        batch = np.random.default_rng(size).normal(size=(size, 4)).astype(np.float32)
        slots = np.zeros(size, dtype=np.int64)
        us = median_us(
            lambda b=batch, s=slots: agent.act(b, parallel=s, independent=True),
            max(100, args.calls // 10),
        )
        emit(f"batched_act_n{size}", size / us * 1e6, "samples/s")


if __name__ == "__main__":
    main()
