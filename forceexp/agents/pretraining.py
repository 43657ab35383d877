"""Pretraining from traces: file handling for every agent, and PPO's two objectives.

``pretrain`` loads and validates trace files and hands them to ``agent.learn_from_traces``.
For PPO (``ppo_objective``):

- ``replay`` follows the reference: recorded episodes are stored as experience, with log-probs
  and values from the current policy (so recorded actions count as on-policy), advantages by GAE
  on the recorded rewards, and the agent's clipped-surrogate update runs ``num_updates`` times.
  The learning signal is the recorded reward; it only resembles cloning when returns are
  positive.
- ``imitation`` is behaviour cloning: minimise the negative log-likelihood of the recorded
  actions (masks respected) and fit the value head to the recorded discounted returns.

Replay-based agents fill their replay memory or clone the actions (``OffPolicyAgent``).
"""

from __future__ import annotations

import os
import random
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from forceexp import tags
from forceexp.core.buffers import Batch, Sequences
from forceexp.core.returns import gae, nstep_advantages
from forceexp.errors import CheckpointError, ConfigError, message
from forceexp.observers.recorder import Trace, list_traces, read_trace

if TYPE_CHECKING:
    from forceexp.agents.ppo import PPOAgent

Objective = Literal["replay", "imitation"]
OBJECTIVES = ("replay", "imitation")
Tensors = dict[str, torch.Tensor]


def _check_args(
    agent: Any, num_iterations: Any, num_traces: Any, num_updates: Any, objective: Any
) -> None:
    for key, value in (("num_iterations", num_iterations), ("num_updates", num_updates)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(message(f"pretrain.{key}", value, "an int >= 1"))
    if num_traces is not None and (not isinstance(num_traces, int) or num_traces < 1):
        raise ConfigError(message("pretrain.num_traces", num_traces, "an int >= 1 or None (all)"))
    if objective not in OBJECTIVES:
        raise ConfigError(message("pretrain.objective", objective, "'replay' or 'imitation'"))
    if not hasattr(agent, "learn_from_traces"):
        raise ConfigError(
            f"pretrain: agent {agent.name!r} has no trainable policy; use e.g. agent='ppo'"
        )


def pretrain(
    agent: PPOAgent,
    directory: str | os.PathLike,
    num_iterations: int,
    num_traces: int | None = 1,
    num_updates: int = 1,
    objective: Objective = "replay",
    skip_unreadable: bool = False,
) -> dict[str, float]:
    """Pretrain ``agent`` on the trace files in ``directory`` without environment interaction.

    Each iteration shuffles the files, loads the first ``num_traces`` (None: all), validates them
    against the agent's specs, and runs ``num_updates`` updates on them.

    Args:
        agent: A PPO-style agent (``policy``, ``optimizer``, ``_minibatch_step``).
        directory: Folder with ``.npz`` traces (see ``forceexp.observers.recorder``).
        num_iterations: Iterations (>= 1).
        num_traces: Trace files per iteration (>= 1, or None for all).
        num_updates: Updates per iteration: PPO updates (``replay``) or passes over the loaded
            steps in minibatches of ``agent.minibatch_size`` (``imitation``).
        objective: ``'replay'`` or ``'imitation'``.
        skip_unreadable: Skip trace files that cannot be read or validated, with a warning
            naming each (default: fail, naming every bad file).

    Returns:
        Metrics of the last iteration.

    Raises:
        ConfigError: bad arguments, or an agent without a trainable policy.
        CheckpointError: no traces in ``directory``, or invalid trace files (all named).
    """
    _check_args(agent, num_iterations, num_traces, num_updates, objective)
    cache = _read_all(agent, directory, skip_unreadable)
    files = list(cache)
    metrics: dict[str, float] = {}
    for _ in range(num_iterations):
        random.shuffle(files)
        chosen = files if num_traces is None else files[:num_traces]
        traces = [cache[path] for path in chosen]
        metrics = agent.learn_from_traces(traces, objective, num_updates)
        agent.timesteps += sum(len(trace.reward) for trace in traces)
        agent.episodes += len(traces)
        for observer in agent.observers:  # summarizer/saver see pretraining like updates
            observer.on_update(agent, metrics)
    return metrics


def _read_all(agent: PPOAgent, directory: Any, skip: bool) -> dict[Any, Trace]:
    """Read and validate every trace file up front; bad ones fail together or are skipped."""
    files = list_traces(directory)
    if not files:
        raise CheckpointError(f"pretrain: no .npz trace files in {os.fspath(directory)!r}")
    cache: dict[Any, Trace] = {}
    errors = []
    for path in files:
        try:
            cache[path] = read_trace(path, agent.state_specs, agent.action_specs)
        except CheckpointError as exc:
            errors.append(str(exc))
    if errors and not skip:
        raise CheckpointError(
            f"pretrain: {len(errors)} of {len(files)} trace file(s) unreadable: "
            + "; ".join(errors)
            + " (pass skip_unreadable=True to skip them)"
        )
    for error in errors:
        warnings.warn(f"pretrain: skipping {error}", stacklevel=3)
    if not cache:
        raise CheckpointError(f"pretrain: no readable trace file in {os.fspath(directory)!r}")
    return cache


def ppo_objective(
    agent: PPOAgent, traces: list[Trace], objective: Objective, num_updates: int
) -> dict[str, float]:
    """PPO's ``replay`` or ``imitation`` update on the concatenated traces."""
    data = _to_tensors(agent, traces)
    step = _replay if objective == "replay" else _imitation
    return step(agent, data, num_updates)


def _to_tensors(agent: PPOAgent, traces: list[Trace]) -> dict[str, Any]:
    """Concatenate traces along time and move them to the agent's device as tensors."""
    device = agent.device

    def cat(key: str) -> Tensors:
        names = getattr(traces[0], key)
        return {
            name: torch.as_tensor(np.concatenate([getattr(t, key)[name] for t in traces])).to(
                device
            )
            for name in names
        }

    masks = {}
    for name, spec in agent.action_specs.items:
        if any(name in t.masks for t in traces):
            full = np.ones((*spec.shape, spec.num_values), dtype=bool)
            parts = [
                t.masks.get(name, np.broadcast_to(full, (len(t.reward), *full.shape)))
                for t in traces
            ]
            masks[name] = torch.as_tensor(np.concatenate(parts)).to(device)
    states = cat("states")
    with torch.no_grad():
        normalized = agent.policy.normalize(states, update=True)
    reward = np.concatenate([t.reward for t in traces])
    if agent.reward_normalizer is not None:  # current statistics; recorded rewards are raw
        reward = agent.reward_normalizer(reward)
    return {
        "states": normalized,
        "masks": masks,
        "actions": _raw_actions(agent, cat("actions")),
        "reward": torch.as_tensor(reward).to(device),
        "terminal": torch.as_tensor(np.concatenate([t.terminal for t in traces])).to(device),
    }


def _raw_actions(agent: PPOAgent, actions: Tensors) -> Tensors:
    """Undo the ``squash`` bounding of float actions so log-probs are of raw samples."""
    out = dict(actions)
    for name, head in agent.policy.heads.items():
        if getattr(head, "bounding", None) == "squash":
            unit = 2.0 * (actions[name] - head.low) / (head.high - head.low) - 1.0
            out[name] = torch.atanh(unit.clamp(-1 + 1e-6, 1 - 1e-6))
    return out


def _advantages(agent: PPOAgent, data: dict[str, Any], values: torch.Tensor, lam: float):
    """GAE (n-step with the agent's ``horizon``) over the concatenated episodes.

    Truncated ends bootstrap from their last value.
    """
    terminal, reward = data["terminal"], data["reward"]
    next_values = torch.cat([values[1:], values[-1:]])
    next_values = torch.where(terminal == 2, values, next_values)
    rows = (reward[:, None], values[:, None], next_values[:, None], terminal[:, None])
    horizon = getattr(agent, "horizon", None)
    if horizon is not None and lam != 1.0:
        return nstep_advantages(*rows, agent.discount, horizon)[:, 0]
    return gae(*rows, agent.discount, lam)[:, 0]


def _replay(agent: PPOAgent, data: dict[str, Any], num_updates: int) -> dict[str, float]:
    """Reference semantics: recorded episodes as on-policy experience, then PPO updates."""
    if agent.policy.recurrent:
        return _replay_sequences(agent, data, num_updates)
    metrics: dict[str, float] = {}
    for _ in range(num_updates):
        with torch.no_grad():
            log_prob, _, values = agent.policy.evaluate(
                data["states"], data["actions"], data["masks"]
            )
        advantages = _advantages(agent, data, values, agent.gae_lambda)
        batch = Batch(
            data["states"],
            data["masks"],
            data["actions"],
            log_prob,
            values,
            advantages,
            advantages + values,
        )
        metrics = agent._update_batch(agent._targets(batch))
        agent.updates += 1
    return metrics


def _replay_sequences(agent: PPOAgent, data: dict[str, Any], num_updates: int) -> dict[str, float]:
    """``_replay`` for recurrent networks: the episodes, one after another, as one sequence.

    Internals start from zero at every episode start (where recorded episodes started), so
    the networks are re-run over the episodes and need no recorded internals.
    """
    terminal = data["terminal"]
    starts = torch.zeros_like(terminal, dtype=torch.bool)
    starts[1:] = terminal[:-1] != 0
    starts[0] = True
    columns = {key: {k: x[:, None] for k, x in data[key].items()} for key in ("states", "masks")}
    actions = {k: x[:, None] for k, x in data["actions"].items()}
    zeros = {
        path: torch.zeros((1, *shape), device=agent.device)
        for path, shape in agent.policy.internal_shapes.items()
    }
    metrics: dict[str, float] = {}
    for _ in range(num_updates):
        with torch.no_grad():
            features = agent.policy.sequence_features(columns["states"], zeros, starts[:, None])
            values = agent.policy.sequence_values(columns["states"], zeros, starts[:, None])
            log_prob, _, value = agent.policy.evaluate_features(
                features[:, 0],
                data["states"],
                data["actions"],
                data["masks"],
                None if values is None else values[:, 0],
            )
        advantages = _advantages(agent, data, value, agent.gae_lambda)
        seq = Sequences(
            columns["states"],
            columns["masks"],
            actions,
            log_prob[:, None],
            value[:, None],
            advantages[:, None],
            (advantages + value)[:, None],
            torch.ones_like(starts)[:, None],
            starts[:, None],
            zeros,
        )
        metrics = agent._update_sequence_batch(agent._targets(seq))
        agent.updates += 1
    return metrics


def _imitation(agent: PPOAgent, data: dict[str, Any], num_updates: int) -> dict[str, float]:
    """Behaviour cloning: NLL of recorded actions plus value regression on recorded returns."""
    with torch.no_grad():
        values = agent.policy.value(data["states"])
    returns = _advantages(agent, data, values, 1.0) + values
    size = returns.shape[0]
    sums = {tags.LOSS_POLICY: 0.0, tags.LOSS_VALUE: 0.0, tags.ENTROPY: 0.0}
    steps = 0
    for _ in range(num_updates):
        order = torch.randperm(size, device=agent.device)
        for start in range(0, size, agent.minibatch_size):
            idx = order[start : start + agent.minibatch_size]
            stats = _imitation_step(agent, data, returns, idx)
            for key, value in stats.items():
                sums[key] += value
            steps += 1
        agent.updates += 1
    return {key: value / max(steps, 1) for key, value in sums.items()}


def _imitation_step(
    agent: PPOAgent, data: dict[str, Any], returns: torch.Tensor, idx: torch.Tensor
) -> dict[str, float]:
    states = {name: x[idx] for name, x in data["states"].items()}
    actions = {name: x[idx] for name, x in data["actions"].items()}
    masks = {name: x[idx] for name, x in data["masks"].items()}
    log_prob, entropy, value = agent.policy.evaluate(states, actions, masks)
    policy_loss = -log_prob.mean()
    value_loss = (value - returns[idx]).pow(2).mean()
    loss = policy_loss + agent.value_coef * value_loss
    agent.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if agent.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(agent.policy.parameters(), agent.max_grad_norm)
    agent.optimizer.step()
    return {
        tags.LOSS_POLICY: policy_loss.item(),
        tags.LOSS_VALUE: value_loss.item(),
        tags.ENTROPY: float(entropy.detach().mean()),
    }
