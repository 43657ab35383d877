"""Pipelines: the agent's state and reward preprocessing, built, run and saved (a mixin).

A mixin of ``Agent``: it uses ``input_specs``, ``parallel_interactions`` and ``device``, and
sets ``preprocessing``, ``reward_processing`` and ``state_specs`` (what the networks see).
``Agent.act``/``observe``/``experience`` call it; ``forceexp.core.preprocessing`` holds the
pipelines themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from forceexp.core.preprocessing import (
    INTERNALS_KEY,
    RewardProcessing,
    StatePreprocessing,
    load_preprocessing,
)
from forceexp.specs import Specs

Tensors = dict[str, torch.Tensor]


class Pipelines:
    """``state_preprocessing`` and ``reward_processing`` of an agent."""

    input_specs: Specs
    parallel_interactions: int
    device: torch.device

    def _build_preprocessing(self, states: Any, rewards: Any) -> None:
        """The state and reward pipelines; ``state_specs`` becomes what the networks see."""
        self.preprocessing: StatePreprocessing | None = None
        self.state_specs: Specs = self.input_specs
        if states not in (None, False):
            preprocessing = StatePreprocessing(states, self.input_specs, self.parallel_interactions)
            if preprocessing.pipelines:
                self.preprocessing = preprocessing.to(self.device)
                self.state_specs = preprocessing.output_specs
        self.reward_processing: RewardProcessing | None = None
        if rewards not in (None, False, []):
            self.reward_processing = RewardProcessing(rewards, self.parallel_interactions)

    def _pipelines(self) -> dict[str, torch.nn.Module]:
        """The preprocessing modules by their ``state_dict`` key."""
        out: dict[str, torch.nn.Module] = {}
        if self.preprocessing is not None:
            out["state_preprocessing"] = self.preprocessing
        if self.reward_processing is not None:
            out["reward_processing"] = self.reward_processing
        return out

    def _preprocess(
        self, batch: Tensors, internals: Any, slots: np.ndarray, independent: bool
    ) -> tuple[Tensors, Any, dict[str, Any] | None]:
        """Run the state pipelines: per slot, or from internals the caller carries.

        An independent act given an internals dict carries the temporal pipelines' rows under
        ``INTERNALS_KEY`` (absent: an episode start); without one, independent acts read the
        slot's history without advancing it (as Tensorforce). Returns the processed states,
        the internals left for the networks and the carried rows (None when not carried).
        """
        assert self.preprocessing is not None
        if independent and isinstance(internals, Mapping) and self.preprocessing.temporal:
            batch, carried = self.preprocessing.independent(batch, internals)
            internals = {k: v for k, v in internals.items() if k != INTERNALS_KEY}
            return batch, internals, carried
        return self.preprocessing(batch, slots, not independent), internals, None

    def _pipeline_state(self) -> dict[str, Any]:
        """The pipelines' buffers (internals of temporal layers, running statistics)."""
        return {
            key: module.state_dict()
            for key, module in self._pipelines().items()
            if module.state_dict()
        }

    def _load_pipeline_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_pipeline_state`` returned (absent entries keep their values)."""
        for key, module in self._pipelines().items():
            if key in state:
                load_preprocessing(module, state[key])
