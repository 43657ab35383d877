"""``Agent.experience`` / ``Agent.update``: learning from externally collected episodes.

``experience`` checks complete episodes against the agent's specs (masks included: a taken
action must be allowed) and keeps them; ``update`` runs one update of the agent's
``learn_from_traces`` (PPO: its clipped-surrogate update with log-probs and values from the
current policy, as for pretraining's ``replay``) on the episodes given since the last update.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forceexp.agents.inputs import reward_array, terminal_array
from forceexp.core.preprocessing import INTERNALS_KEY
from forceexp.errors import ConfigError, ProtocolError, message
from forceexp.observers.recorder import Trace
from forceexp.specs import check_array

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent
    from forceexp.agents.off_policy import OffPolicyAgent

#: ``Trace.path`` of episodes given to ``experience`` (not files: each one is new)
EXPERIENCE = Path("<experience>")


def to_trace(
    agent: Agent, states: Any, actions: Any, terminal: Any, reward: Any, internals: Any = None
) -> Trace:
    """Validate one or more complete episodes as a ``Trace`` (arrays ``(T, ...)``).

    Raises:
        ConfigError: Lengths differ, the last step is not terminal, a terminal is not 0/1/2,
            a component (internals included) does not match its spec, or a taken action is
            masked.
    """
    terminal = terminal_array(terminal, "experience.terminal").reshape(-1)
    reward = reward_array(reward, "experience.reward").reshape(-1)
    steps = len(terminal)
    if steps == 0 or len(reward) != steps:
        raise ConfigError(
            f"experience: {steps} terminals and {len(reward)} rewards; need >= 1 each"
        )
    if terminal[-1] == 0 or terminal.min() < 0 or terminal.max() > 2:
        raise ConfigError(
            message("experience.terminal", terminal.tolist()[-5:], "0/1/2 ending in 1 or 2")
        )
    batch, masks, _ = agent._to_batch(states, batched=True)
    size = next(iter(batch.values())).shape[0]
    if size != steps:
        raise ConfigError(f"experience: {size} states for {steps} terminals")
    if agent.preprocessing is not None:  # each episode's history from its first step
        with torch.no_grad():
            batch = agent.preprocessing.episodes(batch, terminal)
    if agent.reward_processing is not None:
        reward = agent.reward_processing.process_episodes(reward, terminal)
    taken = _actions(agent, actions, steps)
    mask_arrays = {name: m.cpu().numpy() for name, m in masks.items()}
    for name, mask in mask_arrays.items():
        chosen = np.take_along_axis(mask, taken[name][..., None].astype(np.int64), -1)
        if not chosen.all():
            raise ConfigError(f"experience.actions.{name}: a taken action is masked")
    return Trace(
        EXPERIENCE,
        {name: x.cpu().numpy() for name, x in batch.items()},
        mask_arrays,
        taken,
        reward,
        terminal,
        _internals(agent, internals, steps),
    )


def _internals(agent: Agent, internals: Any, steps: int) -> dict[str, np.ndarray]:
    """Given internals as ``{path: (T, *shape)}``: from per-step dicts or stacked arrays.

    Empty when none are given or the agent keeps none (feed-forward networks).
    """
    shapes = {path: np.shape(x) for path, x in agent.initial_internals().items()}
    if internals is None or not shapes:
        return {}
    if isinstance(internals, list | tuple) and all(isinstance(x, Mapping) for x in internals):
        if len(internals) != steps:
            raise ConfigError(f"experience.internals: {len(internals)} entries for {steps} steps")
        internals = {p: np.stack([np.asarray(x.get(p)) for x in internals]) for p in shapes}
    if isinstance(internals, Mapping):  # the state pipelines' rows are not the networks'
        internals = {k: v for k, v in internals.items() if k != INTERNALS_KEY}
    if not isinstance(internals, Mapping) or set(internals) != set(shapes):
        raise ConfigError(
            message("experience.internals", type(internals).__name__, f"keys {sorted(shapes)}")
        )
    out = {}
    for path, shape in shapes.items():
        array = np.asarray(internals[path], dtype=np.float32)
        if array.shape != (steps, *shape):
            raise ConfigError(
                message(f"experience.internals[{path!r}]", array.shape, f"shape {(steps, *shape)}")
            )
        out[path] = array
    return out


def trace_internals(
    agent: OffPolicyAgent, trace: Trace
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The internals a replay agent acted with along ``trace`` and those following each step.

    Given internals (``experience(internals=...)``) are used as they are; otherwise the
    current network runs over the trace from zero internals at each episode start. The
    following internals come from one step of the current network from those.
    """
    states = {n: torch.as_tensor(x, device=agent.device) for n, x in trace.states.items()}
    if trace.internals:
        acted = {p: torch.as_tensor(x, device=agent.device) for p, x in trace.internals.items()}
    else:
        zeros = {p: torch.zeros_like(x[:1]) for p, x in agent._internals.items()}
        running, rows = zeros, []
        for t, ended in enumerate(trace.terminal):
            rows.append(running)
            row = {n: x[t : t + 1] for n, x in states.items()}
            _, running = agent._select_recurrent(row, {}, running, True, np.zeros(1, np.int64))
            if ended:
                running = zeros
        acted = {p: torch.cat([row[p] for row in rows]) for p in zeros}
    slots = np.zeros(len(trace.terminal), dtype=np.int64)
    _, following = agent._select_recurrent(states, {}, acted, True, slots)
    return (
        {p: x.cpu().numpy() for p, x in acted.items()},
        {p: x.cpu().numpy() for p, x in following.items()},
    )


def _actions(agent: Agent, actions: Any, steps: int) -> dict[str, np.ndarray]:
    """Actions as ``{name: (T, *shape)}``: from a list of values/dicts or stacked arrays."""
    specs = agent.action_specs
    if isinstance(actions, list | tuple) and actions and isinstance(actions[0], Mapping):
        actions = {key: np.stack([np.asarray(a[key]) for a in actions]) for key in actions[0]}
    if not isinstance(actions, Mapping):
        actions = {"action": actions}
    if set(actions) != set(specs.names()):
        raise ConfigError(message("experience.actions", sorted(actions), f"keys {specs.names()}"))
    out = {}
    for name, spec in specs.items:
        arr = check_array(f"experience.actions.{name}", spec, np.asarray(actions[name]), 1)
        if len(arr) != steps:
            raise ConfigError(f"experience.actions.{name}: {len(arr)} actions for {steps} steps")
        out[name] = arr
    return out


def experience(
    agent: Agent, states: Any, actions: Any, terminal: Any, reward: Any, internals: Any
) -> None:
    """Check and keep complete episodes for the next ``update`` (see ``Agent.experience``)."""
    if agent._acting.any():
        raise ProtocolError(
            "experience: an act/observe step is unfinished; call observe (or reset) first"
        )
    if not hasattr(agent, "learn_from_traces"):
        raise ConfigError(f"experience: agent {agent.name!r} does not learn; use e.g. 'ppo'")
    trace = to_trace(agent, states, actions, terminal, reward, internals)
    agent._experiences.append(trace)
    agent.timesteps += len(trace.terminal)
    agent.episodes += int(np.count_nonzero(trace.terminal))


def update(agent: Agent) -> dict[str, float]:
    """One update on the episodes given since the last one (see ``Agent.update``)."""
    traces, agent._experiences = agent._experiences, []
    if not traces:
        raise ProtocolError("update: no experience to learn from; call experience(...) first")
    before = agent.updates
    metrics = agent.learn_from_traces(traces, "replay", 1)  # type: ignore[attr-defined]
    if agent.updates == before:
        agent.updates += 1
    for observer in agent.observers:
        observer.on_update(agent, metrics)
    return metrics
