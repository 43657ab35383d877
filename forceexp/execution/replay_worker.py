"""ReplayWorker (a Ray actor: environments + a CPU off-policy agent copy) and learner-side replay.

The worker acts with exploration and steps its environments exactly as a local ``Runner``
would, but where the local agent would store a transition and train, it records the step
(slots, acted states/masks/actions, rewards, terminals, next states/masks) instead. The learner
feeds each recorded step, with the worker's slots shifted to its own, through the agent's own
``_observe``: the same memory insertion (per-slot n-step windows), target syncs and
``train_freq``/``gradient_steps``/``learning_starts`` cadence as a local run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from forceexp.execution.rollout_worker import Worker

Step = tuple[np.ndarray, dict[str, dict[str, np.ndarray]], np.ndarray, np.ndarray, Any, Any]


def module_weights(agent: Any) -> dict[str, dict[str, np.ndarray]]:
    """The agent's networks (every ``torch.nn.Module`` attribute) as NumPy state dicts.

    The preprocessing pipelines stay out: each worker keeps its own slots' histories.
    """
    return {
        name: {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        for name, module in vars(agent).items()
        if isinstance(module, torch.nn.Module) and module not in agent._pipelines().values()
    }


def _numpy(tensors: Any) -> dict[str, np.ndarray]:
    return {n: x.cpu().numpy() for n, x in (tensors or {}).items()}


def replay_step(agent: Any, step: Step, first: int) -> dict[str, float] | None:
    """Feed one recorded step to the learner ``agent`` as its slots ``first + slot``.

    The step's timesteps count (schedules, ``learning_starts``) before it is observed, as a
    local ``act`` counts them; a training phase that falls due runs and is reported to the
    observers. Returns its metrics, or None.
    """
    slots, rows, rewards, terminals, nexts, next_masks = step
    slots = slots + first
    for kind, arrays in rows.items():
        for name, x in arrays.items():
            agent._last[kind][name][slots] = x
    agent.timesteps += len(slots)
    metrics = agent._learn(slots, rewards, terminals, nexts, next_masks, processed=True)
    agent._report_update(metrics)
    return metrics


class ReplayWorker(Worker):
    """Ray actor: environments plus a CPU off-policy agent copy; ``collect`` returns steps.

    Takes ``Worker``'s arguments; the agent copy gets a one-batch memory it never fills.
    """

    def __init__(self, *args: Any) -> None:
        agent_spec = args[0]
        super().__init__(*args, memory=max(int(agent_spec.get("batch_size", 1)), 1))
        self.agent._observe = self._record  # where a local agent stores and trains, record
        self.steps: list[Step] = []

    def _record(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Any,
        next_masks: Any = None,
    ) -> None:
        """Stands in for the agent's ``_observe``: keep the step's transition rows."""
        if terminals.any():
            self.agent._episodes_ended(slots[terminals > 0])  # per-episode noise (OU)
        last = self.agent._last
        rows = {
            kind: {n: x[slots].copy() for n, x in arrays.items()} for kind, arrays in last.items()
        }
        self.steps.append(
            (
                slots.copy(),
                rows,
                rewards.copy(),
                terminals.copy(),
                _numpy(next_states),
                _numpy(next_masks),
            )
        )

    def collect(
        self, weights: dict[str, dict[str, np.ndarray]], counters: tuple[int, int, int], steps: int
    ) -> dict[str, Any]:
        """Load the learner's networks and counters, take ``steps`` steps per environment.

        Args:
            weights: ``module_weights`` of the learner.
            counters: The learner's ``(timesteps, episodes, updates)``: exploration schedules
                and the uniform warm-up (``learning_starts``) follow the learner's position.
            steps: Steps per environment.

        Returns:
            ``steps`` (recorded steps), ``episodes`` (slot, return, length, seconds),
            ``timesteps`` and ``seconds``.
        """
        start = time.perf_counter()
        agent, runner, count = self.agent, self.runner, self.runner.num_parallel
        with torch.no_grad():
            for name, state in weights.items():
                getattr(agent, name).load_state_dict(
                    {k: torch.from_numpy(v) for k, v in state.items()}
                )
        agent.timesteps, agent.episodes, agent.updates = counters
        if self.states is None:
            self.states = runner._reset_all()
        slots, episodes, self.steps = np.arange(count), [], []
        for _ in range(steps):
            rewards, terminals = runner._step(self.states, slots, False, False)
            self.stats.add(None, rewards)
            for i in np.flatnonzero(terminals).tolist():
                episodes.append((i, *self.stats.finish(i)))
                self.states[i] = runner._reset(i)
        return {
            "steps": self.steps,
            "episodes": episodes,
            "timesteps": steps * count,
            "seconds": time.perf_counter() - start,
        }

    def close(self) -> None:
        """Close the environments."""
        self.runner.close()
