"""TD3: DDPG with twin critics, target policy smoothing and delayed actor updates.

The update, per sampled batch (Fujimoto et al. 2018), with unit-scaled actions ``a``:

    eps         = clip(N(0, target_policy_noise), -target_noise_clip, target_noise_clip)
    a'          = clip(mu_target(s') + eps, -1, 1)
    target      = r + discount**k * min(Q1_target(s', a'), Q2_target(s', a'))
    critic loss = sum_i mean(weight * (Qi(s, a) - target)**2)
    every ``policy_delay`` steps:
        actor loss = -mean(Q1(s, mu(s)))
        targets    <- Polyak averaging with ``tau``

``discount**k`` is 0 where the episode terminated (see ``ReplayMemory``). Acting adds the
``exploration`` noise to ``mu(s)`` on the unit scale, then clips to ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from forceexp import tags
from forceexp.agents.agent import Tensors
from forceexp.agents.continuous import DEFAULT_NETWORK, ContinuousAgent
from forceexp.agents.continuous_fast import DeterministicStacks, FastCritics
from forceexp.core.memory import ReplaySample
from forceexp.core.value_functions import DeterministicActor
from forceexp.errors import check_int, check_number


class TD3Agent(ContinuousAgent):
    """Twin Delayed DDPG for bounded float actions (any number, any shape).

    Defaults are Stable-Baselines3's ``TD3``; ``conf/tuning/td3_<env>.yaml`` holds RL-Zoo
    settings.

    Args:
        states: State spec.
        actions: Action spec (bounded float actions only).
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        network: Actor body spec (``'auto'``, a layer list, a dict, a module).
        critic: Body spec of each of the two critics (inputs: the states and the unit-scaled
            ``action``).
        memory: Replay capacity or dict (see ``OffPolicyAgent``).
        batch_size: Transitions per gradient step.
        learning_rate: Adam step size of actor and critic (a number or a schedule spec).
        learning_starts: Timesteps of uniformly random actions before training.
        train_freq: Timesteps between training phases, or ``[n, 'episode']`` (every ``n``
            ended episodes, SB3's ``train_freq=(n, "episode")``).
        gradient_steps: Gradient steps per phase (-1: as many as timesteps collected).
        discount: Discount factor gamma.
        n_step: Steps per TD target.
        tau: Polyak coefficient of the target networks.
        policy_delay: Critic steps per actor step (and target sync).
        target_policy_noise: Std of the smoothing noise on target actions (unit scale).
        target_noise_clip: Bound of that noise.
        exploration: Action noise on the unit scale: None, a number (Gaussian std) or a dict
            (``type``: ``gaussian`` | ``ornstein_uhlenbeck``; see ``core/noise.py``).
        fast_update: Take gradient steps on the shared fast path (``continuous_fast.py``) when
            actor and critics are plain auto MLPs over flat float states on the CPU; the same
            maths as autograd, which every other case uses.
        schedule_timesteps: Training budget for schedules given as a ``fraction``.
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'``, an int, or None.
        normalize_rewards: Scale sampled rewards by the running std of the discounted return
            (``OffPolicyAgent``; SB3 ``VecNormalize(norm_reward=True)``).
        reward_scale: Factor on every sampled reward.
        reward_clip: Clip sampled rewards to ``[-reward_clip, reward_clip]`` or ``[lower, upper]``
            (None: off).
        return_clipping: ``(lower, upper)`` to clip the TD targets to (Tensorforce's
            ``return_processing`` clipping; None: off).
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
        l2_regularization: L2 penalty weight on the actor's weight matrices, added to the
            actor loss (0: off; Tensorforce's; gradient steps then take the autograd path).
        variable_noise: Std of Gaussian noise on the actor's parameters for each
            non-deterministic act (0: off; Tensorforce's).
    """

    name = "td3"
    step_metrics = (tags.LOSS_CRITIC, tags.LOSS_ACTOR, tags.Q_VALUE, tags.TD_ERROR)

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        network: Any = DEFAULT_NETWORK,
        critic: Any = DEFAULT_NETWORK,
        memory: Any = 1_000_000,
        batch_size: int = 256,
        learning_rate: Any = 1e-3,
        learning_starts: int = 100,
        train_freq: int | Sequence[Any] = 1,
        gradient_steps: int = 1,
        discount: float = 0.99,
        n_step: int = 1,
        tau: float = 0.005,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        exploration: Any = None,
        fast_update: bool = True,
        schedule_timesteps: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | tuple[float, float] | None = None,
        state_preprocessing: Any = None,
        reward_processing: Any = None,
        l2_regularization: float = 0.0,
        variable_noise: float = 0.0,
        return_clipping: tuple[float, float] | None = None,
    ) -> None:
        check_int("agent.policy_delay", policy_delay, 1)
        check_number("agent.target_policy_noise", target_policy_noise, 0.0, math.inf)
        check_number("agent.target_noise_clip", target_noise_clip, 0.0, math.inf)
        super().__init__(num_critics=2, **self.shared_arguments())
        self.policy_delay = policy_delay
        self.target_policy_noise, self.target_noise_clip = target_policy_noise, target_noise_clip
        actor = DeterministicActor(self.actor_network(network), self.scaling.size)
        self.add_actor(actor, with_target=True)
        self._fast = self.fast_critics(fast_update)
        if self._fast is not None:
            self._fast_actor = DeterministicStacks(self, self._fast.actor_optimizer)
        self._actor_loss = torch.zeros((), device=self.device)  # the last one, for metrics

    def policy(self, states: Tensors, deterministic: bool) -> torch.Tensor:
        """``mu(s)``: unit actions ``(B, A)`` (the noise is added by ``_select``)."""
        return self.actor(states)

    def target_values(self, batch: ReplaySample) -> torch.Tensor:
        """TD targets ``(B,)``: smoothed target actions, the smaller twin target critic."""
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_states, batch.next_internals)
            noise = torch.randn(next_actions.shape, generator=self._generator, device=self.device)
            noise = (noise * self.target_policy_noise).clamp(
                -self.target_noise_clip, self.target_noise_clip
            )
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_q = torch.stack(
                [critic(batch.next_states, next_actions) for critic in self.critic_targets]
            ).amin(0)
            return self.td_target(batch.rewards, batch.discounts, next_q)

    def fast_policy(self, states: torch.Tensor, deterministic: bool) -> np.ndarray:
        """``mu(s)`` on the actor's stack."""
        return self._fast_actor.act(states)

    def _gradient_step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """One critic step, every ``policy_delay``-th an actor step and target sync."""
        if self._fast is not None:
            return self._fast_step(batch, self._fast)
        actions = self.scaling.to_unit(batch.actions)
        critic_loss, q, td = self.critic_loss(batch, actions, self.target_values(batch))
        self.minimize(self.critic_optimizer, critic_loss)
        self._steps += 1

        if self._steps % self.policy_delay == 0:
            mu = self.actor(batch.states, batch.internals)
            actor_loss = -self.critics[0](batch.states, mu).mean()
            self.minimize(self.actor_optimizer, actor_loss + self.l2_term())
            self._actor_loss = actor_loss.detach()
            self.sync_targets(actor=True)
        stats = torch.stack((critic_loss.detach(), self._actor_loss, q, td.mean()))
        return stats, td

    def _fast_step(
        self, batch: ReplaySample, critics: FastCritics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``_gradient_step`` on the fast path: the same noise draw, maths and order."""
        actor = self._fast_actor
        states, next_states = critics.states(batch.states), critics.states(batch.next_states)
        next_actions = actor.target_actions(next_states)
        noise = torch.randn(next_actions.shape, generator=self._generator).numpy()
        noise = np.clip(
            noise * self.target_policy_noise, -self.target_noise_clip, self.target_noise_clip
        )
        next_actions = np.clip(next_actions + noise, -1.0, 1.0)
        targets = self.td_target(
            batch.rewards.numpy(),
            batch.discounts.numpy(),
            critics.target_min(next_states, next_actions),
        )
        actions = self.scaling.to_unit(batch.actions)
        critic_loss, q, td = critics.step(states, actions, targets, batch.weights.numpy())
        self._steps += 1

        if self._steps % self.policy_delay == 0:  # -mean(Q1(s, mu(s))): d/d Q1 = -1/B
            (values,) = critics.values(states, actor(states), 1)
            self._actor_loss = torch.tensor(-float(values.mean()))
            actor.step(critics.action_grad([np.full_like(values, -1.0 / len(values))]))
            self.sync_targets(actor=True)
        stats = torch.tensor([critic_loss, float(self._actor_loss), q, float(td.mean())])
        return stats, torch.from_numpy(td)
