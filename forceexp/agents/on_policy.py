"""OnPolicyAgent: rollout collection, bootstrapping, acting and observing for on-policy agents.

PPO, A2C, VPG, AC and TRPO share this half: an ``ActorCritic`` policy (state normalisation,
value baseline), the ``RolloutBuffer`` with GAE returns, NumPy acting for small MLPs, truncation
bootstrapping and the deferred update when bootstrap values arrive with the next ``act``. A
subclass builds its optimizer(s) and implements ``_update() -> metrics``, its algorithm.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from forceexp.agents.agent import Agent, Tensors
from forceexp.config import build_network
from forceexp.core.buffers import RolloutBuffer
from forceexp.core.distributions import Bounding
from forceexp.core.fused import unsupported_reason
from forceexp.core.numpy_actor import NumpyActor
from forceexp.core.parameters import bounded
from forceexp.core.policy import ActorCritic
from forceexp.core.regularizers import check_regularizers, perturbed
from forceexp.core.schedules import Schedule, ScheduleName, named_schedule, parse_schedule
from forceexp.core.sde import ResampleSchedule, head_options
from forceexp.errors import ConfigError, check_bounds, check_int, check_number, message


def check_sizes(**sizes: Any) -> None:
    """Raise ``ConfigError`` unless every ``agent.<name>`` given is an int >= 1."""
    for key, value in sizes.items():
        check_int(f"agent.{key}", value, 1)


def check_flag(name: str, value: Any) -> bool:
    """``agent.<name>`` if it is True or False; else a ``ConfigError``."""
    if not isinstance(value, bool):
        raise ConfigError(message(f"agent.{name}", value, "True or False"))
    return value


def bounded_schedule(
    name: str, spec: Any, kind: ScheduleName, horizon: int | None, low: float, high: float
) -> Schedule:
    """``agent.<name>`` (a number or schedule dict) as a schedule with values in [low, high].

    A random process (``ornstein_uhlenbeck``, ``random``) is clipped to the range instead.
    """
    if isinstance(spec, int | float):
        check_number(f"agent.{name}", spec, low, high)
    schedule = named_schedule(spec, kind, f"agent.{name}", horizon)
    expected = f"a schedule with values in [{low}, {high}]"
    return bounded(schedule, spec, f"agent.{name}", low, high, expected)


class OnPolicyAgent(Agent):
    """Acting, observing and rollout bookkeeping shared by the on-policy agents.

    A subclass calls ``Agent.__init__``, then ``_build_policy``, builds ``self.optimizer``
    (saved with the policy), then ``_build_rollout``; it implements ``_update()``, called with
    a full rollout in ``self.buffer`` and bootstrap values in ``self._bootstrap``.
    """

    #: terminated episodes bootstrap from their final state's value (``_build_processing``)
    predict_terminal_values: bool = False
    #: n of n-step advantages as an int schedule (``_build_processing``; None: GAE)
    horizon_schedule: Schedule | None = None

    def _build_policy(
        self,
        network: Any,
        policy: Any,
        baseline: Any,
        normalize_states: bool,
        bounded_actions: Bounding,
        sde: dict[str, Any] | None = None,
        distributions: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """The ``ActorCritic`` (``policy=`` is Tensorforce's name for ``network=``).

        ``sde`` (``forceexp.core.sde``) gives float actions gSDE exploration;
        ``distributions`` per-action head options (``ActorCritic``).

        Raises:
            ConfigError: both ``network`` and ``policy``, bad ``sde`` options, or ``sde``
                without a float action.
        """
        if policy is not None and network not in ("auto", None):
            raise ConfigError("agent: give either network= or policy= (they are aliases), not both")
        body = build_network(policy if policy is not None else network, self.state_specs)
        shared = getattr(body, "named", None)  # the baseline may reuse policy layers by name
        self.policy = ActorCritic(
            self.state_specs,
            self.action_specs,
            body,
            None
            if baseline is None
            else build_network(baseline, self.state_specs, "baseline", shared=shared),
            normalize_states,
            bounded_actions,
            head_options(sde),
            self.parallel_interactions,
            distributions,
        ).to(self.device)
        if sde is not None and not self.policy.sde_heads():
            raise ConfigError(message("agent.sde", sde, "null: no action is float"))
        self._sde_freq = -1 if sde is None else sde.get("sample_freq", -1)
        self.policy.eval()  # acting mode (no dropout, running batch-norm stats); train() in updates

    def _fast_path(self, fast_update: bool) -> bool:
        """Whether the update takes the hand-derived fast path (the reason logged if not)."""
        return self._use_fast_path(fast_update, lambda: unsupported_reason(self.policy))

    def _build_processing(
        self,
        horizon: int | dict[str, Any] | None,
        return_clipping: tuple[float, float] | None,
        normalize_returns: bool = False,
        predict_terminal_values: bool = False,
    ) -> None:
        """Tensorforce's ``reward_estimation`` options that have a counterpart here.

        Args:
            horizon: n of n-step advantages (``returns.nstep_advantages``) instead of GAE: an
                int, or an int parameter dict (``docs/schedules.md``) whose value at the
                update is used.
            return_clipping: ``(lower, upper)`` for the returns before the advantages.
            normalize_returns: Normalize the (clipped) returns of each update to mean 0,
                std 1 before the advantages (Tensorforce's ``return_processing=
                'batch_normalization'``); the baseline then learns the normalized returns.
            predict_terminal_values: Terminated episodes bootstrap from the value of their
                final state like truncated ones, instead of from 0.
        """
        if horizon is not None:
            schedule = parse_schedule(horizon, "agent.horizon", integer=True)
            if isinstance(horizon, bool | float) or schedule.bounds()[0] < 1:
                expected = "an int >= 1 (or an int parameter dict with values >= 1)"
                raise ConfigError(message("agent.horizon", horizon, expected))
            horizon = schedule
        for name, flag in (
            ("normalize_returns", normalize_returns),
            ("predict_terminal_values", predict_terminal_values),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(message(f"agent.{name}", flag, "True or False"))
        self.horizon_schedule = horizon
        self.return_clipping = check_bounds("agent.return_clipping", return_clipping)
        self.normalize_returns = normalize_returns
        self.predict_terminal_values = predict_terminal_values

    def _build_extras(
        self,
        l2_regularization: float,
        variable_noise: float,
        exploration: float | dict[str, Any],
        schedule_timesteps: int | None,
    ) -> bool:
        """Tensorforce's policy regularizers; returns whether NumPy acting stays possible.

        Args:
            l2_regularization: Weight of ``l2 / 2 * sum(w ** 2)`` over the weight matrices,
                added to the update's loss (read by ``PPOUpdate`` and the fast step).
            variable_noise: Std of Gaussian noise added to the policy network's and heads'
                parameters for each stochastic act, removed right after it.
            exploration: Probability (a number or schedule dict) of a uniformly random action
                per stochastic act (masks respected), stored as the action taken.
            schedule_timesteps: Training budget that ``'linear'`` schedules decay over.
        """
        check_regularizers(l2_regularization, variable_noise)
        self.l2_regularization, self.variable_noise = l2_regularization, variable_noise
        self.schedules["exploration"] = bounded_schedule(
            "exploration", exploration, "constant", schedule_timesteps, 0.0, 1.0
        )
        return not variable_noise and self.schedules["exploration"].bounds()[1] == 0.0

    def _exploration(self) -> float:
        """The current exploration probability."""
        return self.schedules["exploration"].value(self.timesteps, self.episodes, self.updates)

    def parameter_schedules(self) -> dict[str, Schedule]:
        """``self.schedules`` plus the n-step ``horizon`` (also as ``reward_horizon``)."""
        out = dict(self.schedules)
        if self.horizon_schedule is not None:
            out["horizon"] = out["reward_horizon"] = self.horizon_schedule
        return out

    @property
    def horizon(self) -> int | None:
        """N of the n-step advantages at the current counters (None: GAE).

        The value of ``horizon_schedule``, so an update uses the horizon current at its start.
        """
        if self.horizon_schedule is None:
            return None
        return int(self.horizon_schedule.value(self.timesteps, self.episodes, self.updates))

    def keep_acting_distributions(self) -> None:
        """Keep every act's distributions (``policy.kept``) for tracking; acts through torch.

        The NumPy fast path computes no distribution objects, so it is left for the torch path.
        """
        self.policy.keep_distributions = True
        self._actor = None

    def _perturbed(self, deterministic: bool) -> AbstractContextManager[None]:
        """Within the block, the acting parameters carry ``variable_noise`` (not when greedy)."""
        noise = 0.0 if deterministic else self.variable_noise
        return perturbed(self.policy.acting_parameters(), noise)

    def _build_rollout(
        self, rollout_length: int, discount: float, gae_lambda: float, numpy_acting: bool
    ) -> None:
        """The rollout buffer, per-slot internals and bootstrap values; NumPy acting if asked.

        Args:
            rollout_length: Steps per slot between updates.
            discount: Discount factor gamma of the returns.
            gae_lambda: GAE lambda (1: Monte-Carlo returns, 0: one-step TD advantages).
            numpy_acting: Act with ``NumpyActor`` (the caller checked the policy is a plain
                MLP on the CPU, ``forceexp.core.fused.unsupported_reason``).
        """
        check_number("agent.discount", discount, 0.0, 1.0)
        check_number("agent.gae_lambda", gae_lambda, 0.0, 1.0)
        self.rollout_length, self.discount, self.gae_lambda = rollout_length, discount, gae_lambda
        parallel = self.parallel_interactions
        self._actor = NumpyActor(self.policy) if numpy_acting else None
        self._state_names = self.policy.state_specs.names()
        self._normalizes = bool(self.policy.normalizers)  # fixed at construction
        self.buffer = RolloutBuffer(
            self.state_specs,
            self.action_specs,
            parallel,
            2 * rollout_length + 1,
            self.device,
            self.policy.internal_shapes,
        )
        self._internals = {  # per-slot recurrent internals (empty without recurrent layers)
            path: torch.zeros((parallel, *shape), device=self.device)
            for path, shape in self.policy.internal_shapes.items()
        }
        self._bootstrap = torch.zeros(parallel, device=self.device)
        self._update_pending = False  # rollout full, waiting for bootstrap values from act
        self._bootstrap_known = np.empty(0, dtype=np.int64)
        self._pending_metrics: dict[str, float] | None = None
        heads = self.policy.sde_heads()
        self._sde = None
        if heads:
            self._sde = ResampleSchedule(heads, self._sde_freq, parallel, rollout_length * parallel)

    def _update(self) -> dict[str, float]:
        """The algorithm's update over the full rollout in ``self.buffer``; its metrics."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Policy (with normalizer statistics), optimizer and reward statistics; no rollout."""
        return {
            **super().state_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load policy and, when present (full checkpoints), optimizer state."""
        super().load_state_dict(state)
        if "policy" in state:
            self.policy.load_state_dict(state["policy"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    # ------------------------------------------------------------------ acting
    def _act(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        if self._update_pending and not independent:
            self._finish_deferred_update(states, slots)
        if self._sde is not None:
            self._sde.before_act(slots, independent, self.timesteps)
        if self._internals:
            return self._act_recurrent(states, masks, slots, independent, deterministic)
        if self._actor is not None:
            return self._act_numpy(states, masks, slots, independent, deterministic)
        with self._perturbed(deterministic), torch.inference_mode():
            normalized = self.policy.normalize(states, update=not independent)
            actions, log_prob, value = self.policy.act(
                normalized, masks, deterministic, not independent, self._exploration()
            )
            if not independent:
                self.buffer.add_act(slots, normalized, masks, actions, log_prob, value)
            return self.policy.to_env(actions)

    def _act_numpy(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> dict[str, np.ndarray]:
        """The CPU fast path: one NumPy forward pass, stored through zero-copy tensor views."""
        normalized = states
        if self._normalizes:
            with torch.inference_mode():
                normalized = self.policy.normalize(states, update=not independent)
        arrays = {name: normalized[name].numpy() for name in self._state_names}
        if len(arrays) == 1:
            x = arrays[self._state_names[0]].reshape(len(slots), -1)
        else:
            x = np.concatenate([a.reshape(len(slots), -1) for a in arrays.values()], 1)
        mask = masks.get(self._actor.name)
        raw, log_prob, value = self._actor.act(
            x, None if mask is None else mask.numpy(), deterministic, not independent
        )
        if not independent:
            actions = {self._actor.name: raw}
            self.buffer.add_act(slots, arrays, masks, actions, log_prob, value)
        return {self._actor.name: self._actor.to_env(raw)}

    def _act_recurrent(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
        internals: Tensors | None = None,
    ) -> Tensors:
        """Act with the slots' internals (or given ones), storing the next internals."""
        slot_index = torch.as_tensor(slots, device=self.device)
        with self._perturbed(deterministic), torch.inference_mode():
            if internals is None:
                internals = {p: x[slot_index] for p, x in self._internals.items()}
                if independent:  # no internals given: start from zeros, keep nothing
                    internals = {p: torch.zeros_like(x) for p, x in internals.items()}
            normalized = self.policy.normalize(states, update=not independent)
            actions, log_prob, value, following = self.policy.act_recurrent(
                normalized, masks, deterministic, internals, not independent, self._exploration()
            )
            self._last_internals = following
            if not independent:
                self.buffer.add_act(slots, normalized, masks, actions, log_prob, value, internals)
                for path, x in following.items():
                    self._internals[path][slot_index] = x
            return self.policy.to_env(actions)

    def initial_internals(self) -> dict[str, Any]:
        """Zero internals ``{layer path: array(shape)}`` for one independent episode."""
        return {
            path: np.zeros(shape, dtype=np.float32)
            for path, shape in self.policy.internal_shapes.items()
        }

    def _act_internals(
        self, states: Tensors, masks: Tensors, internals: Any, batched: bool, deterministic: bool
    ) -> tuple[Tensors, dict[str, Any]]:
        """Independent act from user internals; returns actions and the next internals."""
        given = self._given_internals(internals, self.policy.internal_shapes, states)
        slots = np.zeros(len(next(iter(given.values()))), dtype=np.int64)
        actions = self._act_recurrent(states, masks, slots, True, deterministic, given)
        return actions, self._returned_internals(self._last_internals, batched)

    def reset(self) -> None:
        """Forget unfinished act/observe cycles and zero the recurrent internals."""
        super().reset()
        for x in self._internals.values():
            x.zero_()

    def _slot_internals(self, slots: np.ndarray) -> Tensors | None:
        """The current internals of ``slots`` (those following their last act), if any."""
        if not self._internals:
            return None
        index = torch.as_tensor(slots, device=self.device)
        return {path: x[index] for path, x in self._internals.items()}

    def _finish_deferred_update(self, states: Tensors, slots: np.ndarray) -> None:
        """Bootstrap from the values of newly acted states, then update if all slots are known."""
        needs = self.buffer.needs_bootstrap()
        with torch.inference_mode():
            normalized = self.policy.normalize(states, update=False)
            self._bootstrap[slots] = self.policy.value(normalized, self._slot_internals(slots))
        self._bootstrap_known = np.union1d(self._bootstrap_known, slots)
        if np.isin(needs, self._bootstrap_known).all():
            self._bootstrap_known = np.empty(0, dtype=np.int64)
            self._update_pending = False
            self._pending_metrics = self._update()

    # ------------------------------------------------------------------ observing
    def _observe(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Tensors | None,
        next_masks: Tensors | None = None,
    ) -> dict[str, float] | None:
        metrics, self._pending_metrics = self._pending_metrics, None
        buffer = self.buffer
        if self.predict_terminal_values:  # stored as truncations: bootstrap from the value
            terminals = np.where(terminals == 1, 2, terminals)
        buffer.add_observe(slots, rewards, terminals)
        truncated = terminals == 2
        if truncated.any():  # before the internals reset: a recurrent baseline steps from them
            self._truncation_values(slots, truncated, next_states)
        if self._internals and terminals.any():
            ended = torch.as_tensor(slots[terminals > 0], device=self.device)
            for x in self._internals.values():
                x[ended] = 0.0
        if metrics is None and buffer.is_full(self.rollout_length * self.parallel_interactions):
            needs = buffer.needs_bootstrap()
            if len(needs) and (next_states is None or not np.isin(needs, slots).all()):
                self._update_pending = True  # bootstrap values arrive with the next act
                return None
            if len(needs):
                rows = np.searchsorted(slots, needs) if len(slots) > 1 else np.zeros(1, np.int64)
                picked = {name: x[torch.as_tensor(rows)] for name, x in next_states.items()}
                with torch.inference_mode():
                    self._bootstrap[torch.as_tensor(needs)] = self.policy.value(
                        self.policy.normalize(picked, update=False), self._slot_internals(needs)
                    )
            metrics = self._update()
        return metrics

    def _uses_next_states(self, slots: np.ndarray, terminals: np.ndarray) -> bool:
        """Only episode ends that bootstrap and a completed rollout use next states."""
        rows = self.rollout_length * self.parallel_interactions
        ends = terminals > 0 if self.predict_terminal_values else terminals == 2
        return bool(ends.any()) or self.buffer.is_full(rows, pending=slots)

    def _truncation_values(
        self, slots: np.ndarray, truncated: np.ndarray, next_states: Tensors | None
    ) -> None:
        """Value of the final state of truncated episodes (or of the last state, if unknown)."""
        cut = slots[truncated]
        with torch.inference_mode():
            if next_states is not None:
                rows = torch.as_tensor(np.flatnonzero(truncated))
                final = {name: x[rows] for name, x in next_states.items()}
                value = self.policy.value(
                    self.policy.normalize(final, update=False), self._slot_internals(cut)
                )
            else:
                last = torch.as_tensor(self.buffer.observed[cut] - 1)
                value = self.buffer.value[last, torch.as_tensor(cut)]
        self.buffer.set_final_value(cut, value)
