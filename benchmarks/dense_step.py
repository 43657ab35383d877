"""Cost of one gradient step on the shared fast path (forceexp.core.dense) against autograd.

Two agents' steps, each path timed in one process with alternating rounds (the machine is
shared: the ratio measured together is what counts):

- ``dqn``: ``DQNAgent``'s Huber TD step (``_train(1)``: sampling, the step with denormals
  flushed as in training; fast path vs ``fast_update=False``) at the RL-Zoo CartPole shapes,
  batch 64, 4 -> 256 -> 256 -> 2 relu, a target network for the bootstrap;
- ``sac``: ``SACAgent``'s whole gradient step (``_train(1)``: sampling, temperature, twin
  critics, actor, Polyak) at the RL-Zoo Pendulum shapes, batch 256, 3 -> 256 -> 256 relu actor
  and (3 + 1) -> 256 -> 256 -> 1 critics, learning rate 1e-3; with Stable-Baselines3 installed
  also its ``SAC.train(gradient_steps=1, batch_size=256)`` at the same settings (``sb3``).

Both paths are first checked to agree (parameters after a few steps). Prints one JSON line per
figure: median microseconds per step and the autograd/fast (and SB3/fast) ratios. ``products``
times only the step's large matrix products (DQN: four 64x256x256; SAC: sixteen 256x256x256,
the fewest the maths needs), each network with its own weights and activations as in the step,
in the same rounds: the floor no implementation of the step on this core goes below, and the
``*_floor_vs_sb3`` figure is the ratio to SB3 a step made of nothing else would reach.

Usage: python benchmarks/dense_step.py [--rounds 7] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from forceexp import Agent

MEMORY = 1000  # random transitions the benchmarked agents sample from
PENDULUM_NET = {"type": "auto", "size": 256, "depth": 2, "activation": "relu"}


def emit(framework: str, figure: str, value: float, unit: str) -> None:
    line = {"benchmark": "dense_step", "framework": framework, "figure": figure}
    print(json.dumps({**line, "value": round(value, 3), "unit": unit}), flush=True)


def filled_pair(spec: dict, rng: np.random.Generator, actions: np.ndarray) -> list:
    """The agent on the fast and the autograd path, ``MEMORY`` random transitions in each."""
    agents = [Agent.create({**spec, "fast_update": flag}) for flag in (True, False)]
    width = spec["states"]["shape"][0]
    transitions = (
        np.zeros(MEMORY, dtype=np.int64),
        {"state": rng.standard_normal((MEMORY, width), dtype=np.float32)},
        {},
        {"action": actions},
        rng.standard_normal(MEMORY, dtype=np.float32),
        (rng.random(MEMORY) < 0.05).astype(np.int64),
        {"state": rng.standard_normal((MEMORY, width), dtype=np.float32)},
        {},
    )
    for agent in agents:
        agent.memory.add(*transitions)
    return agents


def dqn_pair(rng: np.random.Generator) -> tuple[Callable[[], object], Callable[[], object], list]:
    """DQNAgent's TD step on both paths (sampling a batch of 64 included: ``_train(1)``)."""
    spec = {
        "agent": "dqn",
        "states": {"type": "float", "shape": (4,)},
        "actions": {"type": "int", "num_values": 2},
        "network": {"type": "auto", "size": 256, "depth": 2, "activation": "relu"},
        "batch_size": 64,
        "seed": 0,
        "torch_threads": None,
    }
    agents = filled_pair(spec, rng, rng.integers(0, 2, MEMORY))
    return (
        lambda: agents[0]._train(1),
        lambda: agents[1]._train(1),
        [agents[0].q, agents[1].q],
    )


def sac_pair(rng: np.random.Generator) -> tuple[Callable[[], object], Callable[[], object], list]:
    """SACAgent's whole gradient step on both paths (sampling included: ``_train(1)``)."""
    spec = {
        "agent": "sac",
        "states": {"type": "float", "shape": (3,)},
        "actions": {"type": "float", "shape": (1,), "min_value": -2.0, "max_value": 2.0},
        "network": PENDULUM_NET,
        "critic": PENDULUM_NET,
        "learning_rate": 1e-3,
        "batch_size": 256,
        "seed": 0,
        "torch_threads": None,
    }
    agents = filled_pair(spec, rng, rng.uniform(-2.0, 2.0, (MEMORY, 1)).astype(np.float32))
    return (
        lambda: agents[0]._train(1),
        lambda: agents[1]._train(1),
        [torch.nn.ModuleList([a.actor, a.critics]) for a in agents],
    )


def sb3_sac_step() -> Callable[[], object] | None:
    """Stable-Baselines3's ``SAC.train(gradient_steps=1, batch_size=256)`` at the same shapes."""
    try:
        from stable_baselines3 import SAC
    except ImportError:
        return None
    model = SAC(
        "MlpPolicy", "Pendulum-v1", learning_rate=1e-3, learning_starts=1000, seed=0, device="cpu"
    )
    model.learn(1000)  # fills the buffer with random-action steps, no training
    return lambda: model.train(gradient_steps=1, batch_size=256)


def products(rows: int, networks: int, plan: list[tuple[str, int]]) -> Callable[[], None]:
    """The large products of a step: ``plan`` lists (kind, network) in the step's order.

    Kinds: ``forward`` ``h @ W^T`` (B, 256), ``weight`` ``d^T @ h`` (256, 256), ``input``
    ``d @ W`` (B, 256); every network has its own weight, and every product its own operands,
    as in the step.
    """
    weights = [torch.randn(256, 256) for _ in range(networks)]
    operands = [(torch.randn(rows, 256), torch.randn(rows, 256)) for _ in plan]
    outs = [torch.empty(256 if kind == "weight" else rows, 256) for kind, _ in plan]

    def run() -> None:
        for (kind, net), (a, b), out in zip(plan, operands, outs, strict=True):
            if kind == "forward":
                torch.mm(a, weights[net].t(), out=out)
            elif kind == "weight":
                torch.mm(a.t(), b, out=out)
            else:
                torch.mm(a, weights[net], out=out)

    return run


#: DQN: online and target forward, the online layer's weight and input gradients.
DQN_PRODUCTS = [("forward", 0), ("forward", 1), ("weight", 0), ("input", 0)]
#: SAC (networks: 0 actor, 1-2 critics, 3-4 targets): actor on s and s', targets on (s', a'),
#: the critic step (forward, weight and input gradients), critics on (s, a~) and their input
#: gradients, the actor's weight and input gradients.
SAC_PRODUCTS = [
    ("forward", 0),
    ("forward", 0),
    ("forward", 3),
    ("forward", 4),
    *[(kind, net) for net in (1, 2) for kind in ("forward", "weight", "input")],
    ("forward", 1),
    ("forward", 2),
    ("input", 1),
    ("input", 2),
    ("weight", 0),
    ("input", 0),
]


def check(fast: Callable, slow: Callable, nets: list[nn.Module]) -> None:
    """Both paths give the same parameters after a few steps (they then time the same work)."""
    for _ in range(3):
        fast()
        slow()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def timed(run: Callable[[], object], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200, help="steps timed per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (agents use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for name, pair in (("dqn", dqn_pair), ("sac", sac_pair)):
        fast, slow, nets = pair(rng)
        check(fast, slow, nets)
        floor = products(64, 2, DQN_PRODUCTS) if name == "dqn" else products(256, 5, SAC_PRODUCTS)
        runs = {"fast": fast, "autograd": slow, "products": floor}
        sb3 = sb3_sac_step() if name == "sac" else None
        if sb3 is not None:
            runs["sb3"] = sb3
        medians = timed_rounds(runs, args.rounds, args.steps)
        for path, median in medians.items():
            framework = "sb3" if path == "sb3" else f"forceexp-{path}"
            emit(framework, f"{name}_us_per_step", median * 1e6, "us")
        emit("forceexp", f"{name}_speedup", medians["autograd"] / medians["fast"], "x")
        emit("forceexp", f"{name}_products_share", medians["products"] / medians["fast"], "x")
        if "sb3" in medians:
            emit("forceexp", f"{name}_speedup_vs_sb3", medians["sb3"] / medians["fast"], "x")
            emit("products", f"{name}_floor_vs_sb3", medians["sb3"] / medians["products"], "x")


def timed_rounds(runs: dict[str, Callable[[], object]], rounds: int, steps: int) -> dict:
    """Median seconds per step of each run, over rounds of alternating order."""
    times: dict[str, list[float]] = {path: [] for path in runs}
    order = list(runs.items())
    for r in range(rounds):
        for path, run in order if r % 2 == 0 else order[::-1]:
            run()  # warm (e.g. a new batch size's buffers)
            times[path].append(timed(run, steps))
    return {path: float(np.median(t)) for path, t in times.items()}


if __name__ == "__main__":
    main()
