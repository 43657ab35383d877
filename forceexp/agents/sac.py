"""SAC: a tanh-squashed Gaussian policy, twin critics and a learned entropy temperature.

The update, per sampled batch (Haarnoja et al. 2018, in Stable-Baselines3's order), with
unit-scaled actions ``a``, ``alpha = exp(log_alpha)`` and ``pi`` sampled with reparameterisation:

    a~, log pi(a~|s)  ~ pi(.|s)                                   (one draw, used twice)
    temperature loss = -mean(log_alpha * (log pi(a~|s) + target_entropy))      (if 'auto')
    a', log pi(a'|s') ~ pi(.|s')
    target           = r + discount**k * (min_i Qi_target(s', a') - alpha * log pi(a'|s'))
    critic loss      = 0.5 * sum_i mean(weight * (Qi(s, a) - target)**2)
    actor loss       = mean(alpha * log pi(a~|s) - min_i Qi(s, a~))
    critic targets   <- Polyak averaging with ``tau`` every ``target_update_interval`` steps

``alpha`` is the value before this step's temperature update. Acting samples from the policy;
deterministic acting takes ``tanh`` of the mean.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from forceexp import tags
from forceexp.agents.agent import Tensors
from forceexp.agents.continuous import DEFAULT_NETWORK, ContinuousAgent
from forceexp.agents.off_policy import check_int
from forceexp.core.memory import ReplaySample
from forceexp.core.targets import polyak_update
from forceexp.core.value_functions import GaussianActor
from forceexp.errors import ConfigError, message


class SACAgent(ContinuousAgent):
    """Soft Actor-Critic for bounded float actions (any number, any shape).

    Defaults are Stable-Baselines3's ``SAC``; ``conf/tuning/sac_<env>.yaml`` holds RL-Zoo
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
        learning_rate: Adam step size of actor, critics and temperature (number or schedule).
        learning_starts: Timesteps of uniformly random actions before training.
        train_freq: Timesteps between training phases.
        gradient_steps: Gradient steps per phase (-1: as many as timesteps collected).
        discount: Discount factor gamma.
        n_step: Steps per TD target.
        tau: Polyak coefficient of the target critics.
        entropy_coef: The temperature alpha: ``'auto'`` (learned, starting at 1.0),
            ``'auto_<init>'`` (learned, starting at ``<init>``) or a fixed number > 0.
        target_entropy: Entropy the learned temperature aims for (``'auto'``: ``-A`` for ``A``
            action components).
        target_update_interval: Gradient steps between target-critic syncs.
        schedule_timesteps: Training budget for schedules given as a ``fraction``.
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'``, an int, or None.
    """

    name = "sac"
    step_metrics = (
        tags.LOSS_CRITIC,
        tags.LOSS_ACTOR,
        tags.LOSS_TEMPERATURE,
        tags.TEMPERATURE,
        tags.Q_VALUE,
        tags.TD_ERROR,
    )

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
        learning_rate: Any = 3e-4,
        learning_starts: int = 100,
        train_freq: int = 1,
        gradient_steps: int = 1,
        discount: float = 0.99,
        n_step: int = 1,
        tau: float = 0.005,
        entropy_coef: Any = "auto",
        target_entropy: Any = "auto",
        target_update_interval: int = 1,
        schedule_timesteps: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
    ) -> None:
        initial, learned = _temperature(entropy_coef)
        check_int("agent.target_update_interval", target_update_interval, 1)
        super().__init__(num_critics=2, **self.shared_arguments())
        self.target_update_interval = target_update_interval
        self.add_actor(GaussianActor(self.actor_network(network), self.scaling.size), False)
        self.target_entropy = _target_entropy(target_entropy, self.scaling.size)
        self.log_alpha = torch.tensor(math.log(initial), device=self.device)
        self.alpha_optimizer = None
        if learned:
            self.log_alpha.requires_grad_(True)
            self.alpha_optimizer = self.adam([self.log_alpha])
            self.saved["alpha_optimizer"] = self.alpha_optimizer

    def policy(self, states: Tensors, deterministic: bool) -> torch.Tensor:
        """A sample of ``pi(.|s)`` (deterministic: ``tanh`` of its mean), unit-scaled."""
        return self.actor(states, deterministic, self._generator)[0]

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizers, generator and ``log_alpha``."""
        return {**super().state_dict(), "log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what ``state_dict`` wrote (weights-only files: networks and ``log_alpha``)."""
        super().load_state_dict(state)
        if "log_alpha" in state:
            with torch.no_grad():
                self.log_alpha.copy_(state["log_alpha"])

    def _gradient_step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """Temperature, critic and actor steps; stats in ``step_metrics`` order, ``|TD|``."""
        actions = self.scaling.to_unit(batch.actions)
        new_actions, log_prob = self.actor(batch.states, generator=self._generator)
        alpha = self.log_alpha.detach().exp()
        temperature_loss = torch.zeros((), device=self.device)
        if self.alpha_optimizer is not None:
            entropy_gap = (log_prob + self.target_entropy).detach()
            temperature_loss = -(self.log_alpha * entropy_gap).mean()
            self.minimize(self.alpha_optimizer, temperature_loss)

        with torch.no_grad():
            next_actions, next_log_prob = self.actor(batch.next_states, generator=self._generator)
            next_q = torch.stack(
                [critic(batch.next_states, next_actions) for critic in self.critic_targets]
            ).amin(0)
            targets = batch.rewards + batch.discounts * (next_q - alpha * next_log_prob)
        critic_loss, q, td = self.critic_loss(batch, actions, targets)
        critic_loss = 0.5 * critic_loss
        self.minimize(self.critic_optimizer, critic_loss)

        new_q = torch.stack([critic(batch.states, new_actions) for critic in self.critics])
        actor_loss = (alpha * log_prob - new_q.amin(0)).mean()
        self.minimize(self.actor_optimizer, actor_loss)

        self._steps += 1
        if self._steps % self.target_update_interval == 0:
            polyak_update(self.critics, self.critic_targets, self.tau)
        detached = (critic_loss.detach(), actor_loss.detach(), temperature_loss.detach())
        stats = torch.stack((*detached, alpha, q, td.mean()))
        return stats, td


def _temperature(spec: Any) -> tuple[float, bool]:
    """``(initial alpha, learned)`` from ``entropy_coef`` (``'auto'``, ``'auto_0.1'``, 0.2)."""
    if isinstance(spec, str) and (spec == "auto" or spec.startswith("auto_")):
        try:
            initial = float(spec[5:]) if spec != "auto" else 1.0
        except ValueError:
            initial = -1.0
        if initial > 0.0:
            return initial, True
    elif isinstance(spec, int | float) and not isinstance(spec, bool) and spec > 0:
        return float(spec), False
    expected = "'auto', 'auto_<initial value>' or a number > 0"
    raise ConfigError(message("agent.entropy_coef", spec, expected))


def _target_entropy(spec: Any, action_size: int) -> float:
    if spec == "auto":
        return -float(action_size)
    if isinstance(spec, bool) or not isinstance(spec, int | float):
        raise ConfigError(message("agent.target_entropy", spec, "'auto' or a number"))
    return float(spec)
