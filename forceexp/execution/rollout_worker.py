"""RolloutWorker (a Ray actor: environments + a CPU agent copy) and joining workers' rollouts."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from forceexp.core.buffers import Batch
from forceexp.execution.progress import EpisodeStats

_FIELDS = ("states", "masks", "actions")


def to_numpy(batch: Batch) -> dict[str, Any]:
    """A batch as NumPy arrays (dicts of them for states, masks and actions)."""
    return {
        field: (
            {name: x.cpu().numpy() for name, x in value.items()}
            if field in _FIELDS
            else value.cpu().numpy()
        )
        for field, value in batch._asdict().items()
    }


def nbytes(value: Any) -> int:
    """Bytes of an array or a nested dict of arrays."""
    if isinstance(value, dict):
        return sum(nbytes(x) for x in value.values())
    return int(value.nbytes)


def merge_rollouts(rollouts: list[dict[str, Any]], counts: list[int], device: Any) -> Batch:
    """Join the workers' rollouts into one ``Batch``, rows in a local run's ``(T, N)`` order.

    Args:
        rollouts: Per worker, a batch as NumPy arrays (``to_numpy``), ``T * n_k`` rows each.
        counts: Environments per worker ``n_k``.
        device: Torch device of the learner.
    """
    steps = [len(r["log_prob"]) // n for r, n in zip(rollouts, counts, strict=True)]
    rectangular = len(set(steps)) == 1 and all(
        len(r["log_prob"]) == t * n for r, t, n in zip(rollouts, steps, counts, strict=True)
    )

    def join(arrays: list[np.ndarray]) -> torch.Tensor:
        if rectangular:  # interleave: row t * N + slot, as the local buffer flattens
            shaped = [
                a.reshape(steps[0], n, *a.shape[1:]) for a, n in zip(arrays, counts, strict=True)
            ]
            joined = np.concatenate(shaped, axis=1).reshape(-1, *arrays[0].shape[1:])
        else:
            joined = np.concatenate(arrays)
        return torch.as_tensor(joined, device=device)

    fields = {}
    for field in Batch._fields:
        if field in _FIELDS:
            names = rollouts[0][field]
            fields[field] = {n: join([r[field][n] for r in rollouts]) for n in names}
        else:
            fields[field] = join([r[field] for r in rollouts])
    return Batch(**fields)


class Worker:
    """What both Ray worker actors hold: a CPU agent copy without observers and a local Runner.

    Args:
        agent_spec: The learner agent's ``spec`` (rebuilt here on the CPU, without observers).
        environment: Environment spec (a name, dict, class or factory), copied per slot.
        count: Environments in this worker.
        max_episode_timesteps: Episode limit.
        seed: Seed of this worker's first environment (the others count up), or None.
        agent_seed: Seed of this worker's agent (its action sampling), or None.
        spec_overrides: Further agent arguments of this kind of worker.
    """

    def __init__(
        self,
        agent_spec: dict[str, Any],
        environment: Any,
        count: int,
        max_episode_timesteps: int | None,
        seed: int | None,
        agent_seed: int | None,
        **spec_overrides: Any,
    ) -> None:
        from forceexp.agents.agent import Agent
        from forceexp.execution.runner import Runner

        spec = {**agent_spec, "parallel_interactions": count, "device": "cpu"}
        spec.update(seed=agent_seed, saver=None, summarizer=None, recorder=None)
        spec.update(spec_overrides)
        self.agent = Agent.create(spec)
        self.runner = Runner(
            self.agent, environment, max_episode_timesteps, count, seed=seed, remote=None
        )
        self.stats = EpisodeStats(count)
        self.states: list[Any] | None = None

    def node(self) -> str:
        """The Ray node id this worker runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()


class RolloutWorker(Worker):
    """Ray actor: environments plus a CPU agent copy; ``collect`` returns one rollout.

    Takes ``Worker``'s arguments.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.agent._update = self._capture  # where a local agent updates, hand over the rollout
        self.rollout: dict[str, Any] | None = None

    def _capture(self) -> dict[str, float]:
        """Stands in for the agent's update: keep the rollout (with GAE), clear the buffer."""
        agent = self.agent
        with torch.inference_mode():
            batch = agent.buffer.batch(agent._bootstrap, agent.discount, agent.gae_lambda)
        self.rollout = to_numpy(batch)
        agent.buffer.carry_over()
        return {}

    def collect(self, weights: dict[str, np.ndarray]) -> dict[str, Any]:
        """Load the learner's weights, step until a rollout is full, return it with episodes."""
        start = time.perf_counter()
        runner, count = self.runner, self.runner.num_parallel
        self.agent.policy.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        if self.states is None:
            self.states = runner._reset_all()
        slots, episodes, steps = np.arange(count), [], 0
        self.rollout = None
        while self.rollout is None:
            rewards, terminals = runner._step(self.states, slots, False, False)
            steps += count
            self.stats.add(None, rewards)
            for i in np.flatnonzero(terminals).tolist():
                episodes.append((i, *self.stats.finish(i)))
                self.states[i] = runner._reset(i)
        return {
            "rollout": self.rollout,
            "episodes": episodes,
            "steps": steps,
            "seconds": time.perf_counter() - start,
        }

    def close(self) -> None:
        """Close the environments."""
        self.runner.close()
