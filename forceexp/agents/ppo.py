"""PPOAgent: acting and observing over parallel slots (its update lives in ``ppo_update``)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from forceexp.agents.agent import Agent, Tensors
from forceexp.agents.ppo_update import PPOUpdate
from forceexp.agents.pretraining import Objective, ppo_objective
from forceexp.config import build_network
from forceexp.core.buffers import RolloutBuffer
from forceexp.core.distributions import Bounding
from forceexp.core.fused import FusedPPOStep, unsupported_reason
from forceexp.core.normalization import reward_normalizer
from forceexp.core.numpy_actor import NumpyActor
from forceexp.core.policy import ActorCritic
from forceexp.core.schedules import Schedule, ScheduleName, check_schedule, named_schedule
from forceexp.core.sde import ResampleSchedule, head_options
from forceexp.errors import ConfigError, message
from forceexp.observers.recorder import Trace

log = logging.getLogger(__name__)


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(message(f"agent.{name}", value, f"a number in [{low}, {high}]"))


def _schedule(
    name: str, spec: Any, kind: ScheduleName, horizon: int | None, low: float, high: float
) -> Schedule:
    """``agent.<name>`` (a number or schedule dict) as a schedule with values in [low, high]."""
    if isinstance(spec, int | float):
        _check_range(name, spec, low, high)
    schedule = named_schedule(spec, kind, f"agent.{name}", horizon)
    smallest, largest = schedule.bounds()
    if smallest < low or largest > high:
        expected = f"a schedule with values in [{low}, {high}]"
        raise ConfigError(message(f"agent.{name}", spec, expected))
    return schedule


class PPOAgent(PPOUpdate, Agent):
    """Proximal Policy Optimization (clipped surrogate, GAE, value and entropy terms).

    Every ``rollout_length`` steps per parallel slot (``rollout_length * parallel_interactions``
    rows in all) the agent runs ``epochs`` passes of shuffled minibatches over the rollout.
    Defaults follow the RL-Zoo CartPole settings (see ``conf/agent/ppo.yaml`` and the README's
    table mapping names to Stable-Baselines3, CleanRL and Tensorforce).

    Args:
        states: State spec.
        actions: Action spec.
        max_episode_timesteps: Episode length limit (informational for PPO).
        parallel_interactions: Number of parallel slots.
        network: Policy network spec (``'auto'``, a layer list, a dict, a module).
        policy: Alias of ``network`` (Tensorforce's name); give one of them.
        baseline: Value network spec; None shares the policy network.
        rollout_length: Steps per slot between updates (SB3 ``n_steps``).
        minibatch_size: Rows per gradient step (SB3 ``batch_size``).
        epochs: Passes over each rollout (SB3 ``n_epochs``, Tensorforce ``multi_step``).
        learning_rate: Adam step size: a number or a schedule dict (``docs/schedules.md``).
        lr_schedule: ``'constant'`` or ``'linear'`` (to 0 at ``schedule_timesteps``).
        discount: Discount factor gamma.
        gae_lambda: GAE lambda.
        clip_ratio: Likelihood-ratio clipping epsilon: a number or a schedule dict.
        clip_schedule: ``'constant'`` or ``'linear'``.
        value_clip: Clip value updates to this range around the old value (None: off).
        entropy_coef: Entropy bonus weight: a number or a schedule dict.
        value_coef: Value loss weight.
        max_grad_norm: Global gradient-norm clipping threshold (None: off).
        normalize_advantages: Normalize advantages per minibatch.
        normalize_states: Running mean/std normalization of float states.
        normalize_rewards: Scale rewards by the running std of the discounted return (SB3
            ``VecNormalize(norm_reward=True)``; ``forceexp.core.normalization``).
        reward_scale: Factor on every learning reward (after normalization).
        reward_clip: Clip learning rewards to ``[-reward_clip, reward_clip]`` (None: off; SB3
            clips normalized rewards at 10).
        bounded_actions: ``'clip'``, ``'squash'`` or ``'beta'`` for bounded float actions.
        sde: gSDE exploration for float actions (SB3 ``use_sde``; ``docs/agents.md``), a dict
            of ``sample_freq`` (steps per slot between new exploration matrices; -1: only at
            each rollout start), ``log_std_init`` (default 0) and ``full_std`` (default
            true); None: plain Gaussian noise. Uses the autograd update.
        target_kl: Stop an update's epochs early when the approximate KL exceeds 1.5x this.
        fast_update: Use hand-derived gradients (``forceexp.core.fused``) when the networks are
            plain MLPs with one categorical or Gaussian action: same maths as autograd, several
            times faster on small networks; other networks always use autograd.
        schedule_timesteps: Training budget in timesteps that ``'linear'`` schedule names decay
            over (and the horizon of a linear schedule dict's ``fraction``).
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'`` (one torch thread for small CPU networks), an int, or None.
    """

    name = "ppo"

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        network: Any = "auto",
        policy: Any = None,
        baseline: Any = "auto",
        rollout_length: int = 32,
        minibatch_size: int = 256,
        epochs: int = 20,
        learning_rate: float | dict[str, Any] = 1e-3,
        lr_schedule: ScheduleName = "constant",
        discount: float = 0.98,
        gae_lambda: float = 0.8,
        clip_ratio: float | dict[str, Any] = 0.2,
        clip_schedule: ScheduleName = "constant",
        value_clip: float | None = None,
        entropy_coef: float | dict[str, Any] = 0.0,
        value_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantages: bool = True,
        normalize_states: bool = False,
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | None = None,
        bounded_actions: Bounding = "clip",
        sde: dict[str, Any] | None = None,
        target_kl: float | None = None,
        fast_update: bool = True,
        schedule_timesteps: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
    ) -> None:
        sizes = {
            "rollout_length": rollout_length,
            "minibatch_size": minibatch_size,
            "epochs": epochs,
        }
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(message(f"agent.{key}", value, "an int >= 1"))
        _check_range("discount", discount, 0.0, 1.0)
        _check_range("gae_lambda", gae_lambda, 0.0, 1.0)
        check_schedule("agent.lr_schedule", lr_schedule, schedule_timesteps)
        check_schedule("agent.clip_schedule", clip_schedule, schedule_timesteps)
        self.schedules = {  # current values are taken at the start of each update
            "learning_rate": _schedule(
                "learning_rate", learning_rate, lr_schedule, schedule_timesteps, 0.0, 1.0
            ),
            "clip_ratio": _schedule(
                "clip_ratio", clip_ratio, clip_schedule, schedule_timesteps, 0.0, 10.0
            ),
            "entropy_coef": _schedule(
                "entropy_coef", entropy_coef, "constant", schedule_timesteps, -math.inf, math.inf
            ),
        }
        if policy is not None and network not in ("auto", None):
            raise ConfigError("agent: give either network= or policy= (they are aliases), not both")
        super().__init__(
            states,
            actions,
            max_episode_timesteps,
            parallel_interactions,
            seed,
            device,
            saver=saver,
            summarizer=summarizer,
            recorder=recorder,
            torch_threads=torch_threads,
        )
        self.rollout_length, self.minibatch_size, self.epochs = (
            rollout_length,
            minibatch_size,
            epochs,
        )
        self.discount, self.gae_lambda, self.value_clip = discount, gae_lambda, value_clip
        self.entropy_coef = self.schedules["entropy_coef"].value(0, 0, 0)  # current value
        self.value_coef = value_coef
        self.max_grad_norm, self.normalize_advantages = max_grad_norm, normalize_advantages
        self.target_kl = target_kl
        self.reward_normalizer = reward_normalizer(
            normalize_rewards, reward_scale, reward_clip, discount, parallel_interactions
        )
        self.policy = ActorCritic(
            self.state_specs,
            self.action_specs,
            build_network(policy if policy is not None else network, self.state_specs, "network"),
            None if baseline is None else build_network(baseline, self.state_specs, "baseline"),
            normalize_states,
            bounded_actions,
            head_options(sde),
            parallel_interactions,
        ).to(self.device)
        self._sde = None
        if sde is not None:
            if not self.policy.sde_heads():
                raise ConfigError(message("agent.sde", sde, "null: no action is float"))
            self._sde = ResampleSchedule(
                self.policy.sde_heads(),
                sde.get("sample_freq", -1),
                parallel_interactions,
                rollout_length * parallel_interactions,
            )
        self.policy.eval()  # acting mode (no dropout, running batch-norm stats); train() in updates
        fused = self.device.type in ("cpu", "cuda")  # one kernel per step instead of one per tensor
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(),
            lr=self.schedules["learning_rate"].value(0, 0, 0),
            eps=1e-5,
            fused=fused,
        )
        self._fused = None
        reason = unsupported_reason(self.policy) if fast_update else None
        if reason is not None:
            log.info("PPO update: autograd path (no fast path: %s)", reason)
        if fast_update and reason is None:
            self._fused = FusedPPOStep(
                self.policy,
                self.optimizer,
                value_coef,
                self.entropy_coef,
                value_clip,
                max_grad_norm,
                normalize_advantages,
            )
        self._actor = None
        if self._fused is not None and self.device.type == "cpu":
            self._actor = NumpyActor(self.policy)
        self._state_names = self.policy.state_specs.names()
        self._normalizes = bool(self.policy.normalizers)  # fixed at construction
        self.buffer = RolloutBuffer(
            self.state_specs,
            self.action_specs,
            parallel_interactions,
            2 * rollout_length + 1,
            self.device,
            self.policy.internal_shapes,
        )
        self._internals = {  # per-slot recurrent internals (empty without recurrent layers)
            path: torch.zeros((parallel_interactions, *shape), device=self.device)
            for path, shape in self.policy.internal_shapes.items()
        }
        self._bootstrap = torch.zeros(parallel_interactions, device=self.device)
        self._update_pending = False  # rollout full, waiting for bootstrap values from act
        self._bootstrap_known = np.empty(0, dtype=np.int64)
        self._pending_metrics: dict[str, float] | None = None

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

    def learn_from_traces(
        self, traces: list[Trace], objective: Objective, num_updates: int
    ) -> dict[str, float]:
        """Pretraining on loaded traces (``Agent.pretrain``): PPO's replay or imitation."""
        return ppo_objective(self, traces, objective, num_updates)

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
        with torch.inference_mode():
            normalized = self.policy.normalize(states, update=not independent)
            actions, log_prob, value = self.policy.act(
                normalized, masks, deterministic, with_value=not independent
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
        with torch.inference_mode():
            if internals is None:
                internals = {p: x[slot_index] for p, x in self._internals.items()}
                if independent:  # no internals given: start from zeros, keep nothing
                    internals = {p: torch.zeros_like(x) for p, x in internals.items()}
            normalized = self.policy.normalize(states, update=not independent)
            actions, log_prob, value, following = self.policy.act_recurrent(
                normalized, masks, deterministic, internals, with_value=not independent
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
        shapes = self.policy.internal_shapes
        if not isinstance(internals, dict) or set(internals) != set(shapes):
            raise ConfigError(
                message("act.internals", internals, f"a dict with keys {sorted(shapes)}")
            )
        size = next(iter(states.values())).shape[0]
        given = {}
        for path, shape in shapes.items():
            x = torch.as_tensor(np.asarray(internals[path], dtype=np.float32), device=self.device)
            if tuple(x.shape[-len(shape) :]) != shape or x.numel() != size * int(np.prod(shape)):
                raise ConfigError(
                    f"act.internals[{path!r}]: shape {tuple(x.shape)} does not match "
                    f"{shape} (per row, {size} rows)"
                )
            given[path] = x.reshape(size, *shape)
        slots = np.zeros(size, dtype=np.int64)
        actions = self._act_recurrent(states, masks, slots, True, deterministic, given)
        following = {p: x.cpu().numpy() for p, x in self._last_internals.items()}
        if not batched:
            following = {p: x[0] for p, x in following.items()}
        return actions, following

    def reset(self) -> None:
        """Forget unfinished act/observe cycles and zero the recurrent internals."""
        super().reset()
        for x in self._internals.values():
            x.zero_()

    def _finish_deferred_update(self, states: Tensors, slots: np.ndarray) -> None:
        """Bootstrap from the values of newly acted states, then update if all slots are known."""
        needs = self.buffer.needs_bootstrap()
        with torch.inference_mode():
            normalized = self.policy.normalize(states, update=False)
            self._bootstrap[slots] = self.policy.value(normalized)
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
        buffer.add_observe(slots, rewards, terminals)
        if self._internals and terminals.any():
            ended = torch.as_tensor(slots[terminals > 0], device=self.device)
            for x in self._internals.values():
                x[ended] = 0.0
        truncated = terminals == 2
        if truncated.any():
            self._truncation_values(slots, truncated, next_states)
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
                        self.policy.normalize(picked, update=False)
                    )
            metrics = self._update()
        return metrics

    def _uses_next_states(self, slots: np.ndarray, terminals: np.ndarray) -> bool:
        """Only truncated episodes and a completed rollout bootstrap from next states."""
        rows = self.rollout_length * self.parallel_interactions
        return bool((terminals == 2).any()) or self.buffer.is_full(rows, pending=slots)

    def _truncation_values(
        self, slots: np.ndarray, truncated: np.ndarray, next_states: Tensors | None
    ) -> None:
        """Value of the final state of truncated episodes (or of the last state, if unknown)."""
        cut = slots[truncated]
        with torch.inference_mode():
            if next_states is not None:
                rows = torch.as_tensor(np.flatnonzero(truncated))
                final = {name: x[rows] for name, x in next_states.items()}
                value = self.policy.value(self.policy.normalize(final, update=False))
            else:
                last = torch.as_tensor(self.buffer.observed[cut] - 1)
                value = self.buffer.value[last, torch.as_tensor(cut)]
        self.buffer.set_final_value(cut, value)
