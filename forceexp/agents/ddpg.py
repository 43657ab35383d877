"""DDPG (Tensorforce's ``dpg``): a deterministic actor trained through one Q critic.

The update, per sampled batch (Lillicrap et al. 2016), with unit-scaled actions ``a``:

    target      = r + discount**k * Q_target(s', mu_target(s'))
    critic loss = mean(weight * (Q(s, a) - target)**2)
    actor loss  = -mean(Q(s, mu(s)))
    targets     <- Polyak averaging with ``tau`` after every step

``discount**k`` is 0 where the episode terminated (see ``ReplayMemory``). Acting adds the
``exploration`` noise to ``mu(s)`` on the unit scale, then clips to ``[-1, 1]``.
"""

from __future__ import annotations

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


class DDPGAgent(ContinuousAgent):
    """Deep Deterministic Policy Gradient for bounded float actions (any number, any shape).

    Defaults are Stable-Baselines3's ``DDPG``; ``conf/tuning/dpg_<env>.yaml`` holds RL-Zoo
    settings.

    Args:
        states: State spec.
        actions: Action spec (bounded float actions only).
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        network: Actor body spec (``'auto'``, a layer list, a dict, a module).
        critic: Critic body spec (its inputs: the states and the unit-scaled ``action``).
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

    name = "dpg"
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
        super().__init__(num_critics=1, **self.shared_arguments())
        actor = DeterministicActor(self.actor_network(network), self.scaling.size)
        self.add_actor(actor, with_target=True)
        self._fast = self.fast_critics(fast_update)
        if self._fast is not None:
            self._fast_actor = DeterministicStacks(self, self._fast.actor_optimizer)

    def policy(self, states: Tensors, deterministic: bool) -> torch.Tensor:
        """``mu(s)``: unit actions ``(B, A)`` (the noise is added by ``_select``)."""
        return self.actor(states)

    def fast_policy(self, states: torch.Tensor, deterministic: bool) -> np.ndarray:
        """``mu(s)`` on the actor's stack."""
        return self._fast_actor.act(states)

    def _gradient_step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """One critic and actor step; stats in ``step_metrics`` order, ``|TD error|`` per row."""
        if self._fast is not None:
            return self._fast_step(batch, self._fast)
        actions = self.scaling.to_unit(batch.actions)
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_states, batch.next_internals)
            next_q = self.critic_targets[0](batch.next_states, next_actions)
            targets = self.td_target(batch.rewards, batch.discounts, next_q)
        critic_loss, q, td = self.critic_loss(batch, actions, targets)
        self.minimize(self.critic_optimizer, critic_loss)

        mu = self.actor(batch.states, batch.internals)
        actor_loss = -self.critics[0](batch.states, mu).mean()
        self.minimize(self.actor_optimizer, actor_loss + self.l2_term())

        self._steps += 1
        self.sync_targets(actor=True)
        stats = torch.stack((critic_loss.detach(), actor_loss.detach(), q, td.mean()))
        return stats, td

    def _fast_step(
        self, batch: ReplaySample, critics: FastCritics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``_gradient_step`` on the fast path: the same maths and order."""
        actor = self._fast_actor
        states, next_states = critics.states(batch.states), critics.states(batch.next_states)
        next_q = critics.target_min(next_states, actor.target_actions(next_states))
        targets = self.td_target(batch.rewards.numpy(), batch.discounts.numpy(), next_q)
        actions = self.scaling.to_unit(batch.actions)
        critic_loss, q, td = critics.step(states, actions, targets, batch.weights.numpy())

        (values,) = critics.values(states, actor(states), 1)  # -mean(Q(s, mu(s))): d/d Q = -1/B
        actor_loss = -float(values.mean())
        actor.step(critics.action_grad([np.full_like(values, -1.0 / len(values))]))
        self._steps += 1
        self.sync_targets(actor=True)
        stats = [critic_loss, actor_loss, q, float(td.mean())]
        return torch.tensor(stats), torch.from_numpy(td)
