"""Baseline agents that do not learn: uniform random (mask-aware) and constant actions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forceexp.agents.agent import Agent, Tensors
from forceexp.core.exploration import uniform_actions
from forceexp.errors import ConfigError


class RandomAgent(Agent):
    """Uniformly random actions; int actions sample only values their masks allow.

    Float actions sample uniformly within bounds, or from a standard normal when unbounded.
    """

    name = "random"

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        seed: int | None = None,
        device: str = "cpu",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
    ) -> None:
        super().__init__(
            states,
            actions,
            max_episode_timesteps,
            parallel_interactions,
            seed,
            device,
            saver,
            summarizer,
            recorder,
            torch_threads,
        )
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))

    def state_dict(self) -> dict[str, Any]:
        """The action generator's state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the action generator's state."""
        if "generator" in state:
            self._generator.set_state(state["generator"])

    def _act(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        return uniform_actions(self.action_specs, masks, len(slots), self._generator, self.device)


class ConstantAgent(Agent):
    """Always the same action per component (``action_values``; default: 0 / False / bound mid).

    Where an int action's mask disallows its constant, the first allowed value is taken.
    """

    name = "constant"

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        action_values: Any = None,
        seed: int | None = None,
        device: str = "cpu",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
    ) -> None:
        super().__init__(
            states,
            actions,
            max_episode_timesteps,
            parallel_interactions,
            seed,
            device,
            saver,
            summarizer,
            recorder,
            torch_threads,
        )
        if action_values is not None and self.action_specs.single:
            action_values = {"action": action_values}
        given = dict(action_values or {})
        self.values = {}
        for name, spec in self.action_specs.items:
            value = given.pop(name, None)
            if value is None:
                value = (
                    0.5 * (np.asarray(spec.min_value) + np.asarray(spec.max_value))
                    if (spec.is_bounded)
                    else 0
                )
            arr = np.broadcast_to(np.asarray(value, dtype=spec.dtype), spec.shape)
            self.values[name] = torch.as_tensor(arr.copy(), device=self.device)
        if given:
            raise ConfigError(
                f"action_values: unknown action(s) {sorted(given)}; "
                f"valid: {self.action_specs.names()}"
            )

    def _act(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        size = len(slots)
        out = {name: v.expand(size, *v.shape).clone() for name, v in self.values.items()}
        for name, mask in masks.items():  # a masked constant falls back to the first allowed
            chosen = out[name].long().unsqueeze(-1)
            allowed = mask.gather(-1, chosen).squeeze(-1)
            out[name] = torch.where(allowed, out[name], mask.long().argmax(-1).to(out[name].dtype))
        return out
