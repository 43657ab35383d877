"""Cost of one gradient step on the shared fast path (forceexp.core.dense) against autograd.

Two value-learning steps, each forward + backward + clipping + Adam, in one process with
alternating rounds (the machine is shared: the ratio measured together is what counts):

- ``dqn``: ``DQNAgent``'s Huber TD step (fast path vs ``fast_update=False``) at the RL-Zoo
  CartPole shapes,
  batch 64, 4 -> 256 -> 256 -> 2 relu, a target network for the bootstrap;
- ``sac_critic``: a SAC-like critic step, batch 256, Q(concat(s, a)) with (3 + 1) -> 256 ->
  256 -> 1 relu, squared TD error against a target critic on the next states and actions.

Both paths are first checked to agree (parameters after a few steps). Prints one JSON line per
figure: median microseconds per step and the autograd/fast ratio.

Usage: python benchmarks/dense_step.py [--rounds 7] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from forceexp import Agent
from forceexp.core.dense import DenseStack, FastOptimizer

DISCOUNT = 0.99


def emit(framework: str, figure: str, value: float, unit: str) -> None:
    line = {"benchmark": "dense_step", "framework": framework, "figure": figure}
    print(json.dumps({**line, "value": round(value, 3), "unit": unit}), flush=True)


def mlp(inputs: int, outputs: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(inputs, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, outputs)
    )


def dqn_pair(rng: np.random.Generator) -> tuple[Callable[[], object], Callable[[], object], list]:
    """DQNAgent's TD step on both paths, one batch of 64 from the same memory."""
    spec = {
        "agent": "dqn",
        "states": {"type": "float", "shape": (4,)},
        "actions": {"type": "int", "num_values": 2},
        "network": {"type": "auto", "size": 256, "depth": 2, "activation": "relu"},
        "seed": 0,
        "torch_threads": None,
    }
    agents = [Agent.create({**spec, "fast_update": flag}) for flag in (True, False)]
    size = 1000
    transitions = (
        np.zeros(size, dtype=np.int64),
        {"state": rng.standard_normal((size, 4), dtype=np.float32)},
        {},
        {"action": rng.integers(0, 2, size)},
        rng.standard_normal(size, dtype=np.float32),
        (rng.random(size) < 0.05).astype(np.int64),
        {"state": rng.standard_normal((size, 4), dtype=np.float32)},
        {},
    )
    batches = []
    for agent in agents:
        agent.memory.add(*transitions)
        batches.append(agent.memory.sample(64))
    return (
        lambda: agents[0]._gradient_step(batches[0]),
        lambda: agents[1]._gradient_step(batches[1]),
        [agents[0].q, agents[1].q],
    )


class FastCriticStep:
    """A SAC-like critic step on the shared stack: 0.5 * mean((Q(s, a) - y)^2), then Adam."""

    def __init__(self, critic: nn.Module, target: nn.Module, optimizer: torch.optim.Adam) -> None:
        self.fast = FastOptimizer(optimizer)
        self.critic, self.target = DenseStack(critic, self.fast), DenseStack(target)

    def step(self, x: torch.Tensor, next_x: torch.Tensor, rewards: np.ndarray) -> float:
        q_next = self.target.forward(next_x, keep=False).numpy()[:, 0]
        y = rewards + DISCOUNT * q_next
        q = self.critic.forward(x).numpy()[:, 0]
        diff = q - y
        np.multiply(diff, 1.0 / len(diff), out=self.critic.grad_out().numpy()[:, 0])
        self.critic.backward()
        norm, _ = self.fast.clip_grad_norm(10.0)
        self.fast.step()
        return norm


def autograd_critic_step(critic, target, optimizer, x, next_x, rewards) -> float:
    with torch.no_grad():
        y = torch.from_numpy(rewards) + DISCOUNT * target(next_x)[:, 0]
    loss = 0.5 * (critic(x)[:, 0] - y).square().mean()
    optimizer.zero_grad()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(critic.parameters(), 10.0)
    optimizer.step()
    return float(norm)


def critic_pair(
    rng: np.random.Generator,
) -> tuple[Callable[[], object], Callable[[], object], list]:
    size = 256
    nets = [mlp(4, 1, 2), mlp(4, 1, 3)]
    twins = copy.deepcopy(nets)
    x, next_x = (torch.from_numpy(rng.standard_normal((size, 4), dtype=np.float32)) for _ in "ab")
    rewards = rng.standard_normal(size, dtype=np.float32)
    fast = FastCriticStep(nets[0], nets[1], torch.optim.Adam(nets[0].parameters(), lr=3e-4))
    slow = torch.optim.Adam(twins[0].parameters(), lr=3e-4, fused=True)
    return (
        lambda: fast.step(x, next_x, rewards),
        lambda: autograd_critic_step(twins[0], twins[1], slow, x, next_x, rewards),
        [nets[0], twins[0]],
    )


def check(fast: Callable, slow: Callable, nets: list[nn.Module]) -> None:
    """Both paths give the same parameters after a few steps (they then time the same work)."""
    for _ in range(3):
        fast()
        slow()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


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
    for name, pair in (("dqn", dqn_pair), ("sac_critic", critic_pair)):
        fast, slow, nets = pair(rng)
        check(fast, slow, nets)
        times: dict[str, list[float]] = {"fast": [], "autograd": []}
        for r in range(args.rounds):
            order = (("fast", fast), ("autograd", slow))
            for path, run in order if r % 2 == 0 else order[::-1]:
                times[path].append(timed(run, args.steps))
        medians = {path: float(np.median(t)) for path, t in times.items()}
        for path, median in medians.items():
            emit(f"forceexp-{path}", f"{name}_us_per_step", median * 1e6, "us")
        emit("forceexp", f"{name}_speedup", medians["autograd"] / medians["fast"], "x")


if __name__ == "__main__":
    main()
