"""Tensorforce's ``agent.model``: the agent's attributes plus its current parameter values.

Tensorforce code reads hyperparameters as ``agent.model.exploration.value().numpy().item()``.
``ModelView`` gives that access: a name the agent lists in ``parameter_schedules()``
(``learning_rate``, ``exploration``, ``reward_horizon``, ...) is a ``ParameterValue`` whose
``value()`` is the schedule's value at the agent's current counters, as a torch scalar;
every other attribute is the agent's own (``agent.model.get_architecture()``). The view is
read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from forceexp.core.schedules import Schedule, Truncated

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent


class ParameterValue:
    """One scheduled hyperparameter of an agent, read at the agent's current counters.

    Args:
        agent: The agent whose ``timesteps``/``episodes``/``updates`` the schedule reads.
        schedule: The hyperparameter's schedule.
    """

    def __init__(self, agent: Agent, schedule: Schedule) -> None:
        self.agent, self.schedule = agent, schedule

    def value(self) -> torch.Tensor:
        """The current value as a 0-d tensor (int64 for int parameters, else float32)."""
        agent = self.agent
        value = self.schedule.value(agent.timesteps, agent.episodes, agent.updates)
        if isinstance(self.schedule, Truncated):
            return torch.tensor(int(value))
        return torch.tensor(value, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"ParameterValue({self.schedule!r})"


class ModelView:
    """``agent.model``: the agent's attributes, its parameters as ``ParameterValue``s."""

    def __init__(self, agent: Agent) -> None:
        object.__setattr__(self, "_agent", agent)

    def __getattr__(self, name: str) -> Any:
        agent = self._agent
        schedules = agent.parameter_schedules()
        if name in schedules:
            return ParameterValue(agent, schedules[name])
        return getattr(agent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"agent.model is read-only; set {name!r} on the agent")

    def __dir__(self) -> list[str]:
        return sorted({*dir(self._agent), *self._agent.parameter_schedules()})
