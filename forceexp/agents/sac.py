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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from forceexp import tags
from forceexp.agents.agent import Tensors
from forceexp.agents.continuous import DEFAULT_NETWORK, ContinuousAgent
from forceexp.agents.continuous_fast import FastCritics
from forceexp.core.dense import DenseStack, FastOptimizer
from forceexp.core.memory import ReplaySample
from forceexp.core.value_functions import LOG_STD_MAX, LOG_STD_MIN, GaussianActor
from forceexp.errors import ConfigError, check_int, message


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
        train_freq: Timesteps between training phases, or ``[n, 'episode']`` (every ``n``
            ended episodes, SB3's ``train_freq=(n, "episode")``).
        gradient_steps: Gradient steps per phase (-1: as many as timesteps collected).
        discount: Discount factor gamma.
        n_step: Steps per TD target.
        tau: Polyak coefficient of the target critics.
        entropy_coef: The temperature alpha: ``'auto'`` (learned, starting at 1.0),
            ``'auto_<init>'`` (learned, starting at ``<init>``) or a fixed number > 0.
        target_entropy: Entropy the learned temperature aims for (``'auto'``: ``-A`` for ``A``
            action components).
        target_update_interval: Gradient steps between target-critic syncs.
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
        exploration: Extra action noise on the unit scale after sampling (a ``make_noise``
            spec: None, a Gaussian std, a schedule dict; Tensorforce's ``exploration``).
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
        train_freq: int | Sequence[Any] = 1,
        gradient_steps: int = 1,
        discount: float = 0.99,
        n_step: int = 1,
        tau: float = 0.005,
        entropy_coef: Any = "auto",
        target_entropy: Any = "auto",
        target_update_interval: int = 1,
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
        exploration: Any = None,
        return_clipping: tuple[float, float] | None = None,
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
        self._fast = self.fast_critics(fast_update)
        if self._fast is not None:
            self._fast_actor = FastGaussian(self.actor, self._fast.actor_optimizer)
            self._fast_alpha = FastOptimizer(self.alpha_optimizer) if learned else None

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
        if self._fast is not None:
            return self._fast_step(batch, self._fast)
        actions = self.scaling.to_unit(batch.actions)
        new_actions, log_prob = self.actor(
            batch.states, generator=self._generator, internals=batch.internals
        )
        alpha = self.log_alpha.detach().exp()
        temperature_loss = torch.zeros((), device=self.device)
        if self.alpha_optimizer is not None:
            entropy_gap = (log_prob + self.target_entropy).detach()
            temperature_loss = -(self.log_alpha * entropy_gap).mean()
            self.minimize(self.alpha_optimizer, temperature_loss)

        with torch.no_grad():
            next_actions, next_log_prob = self.actor(
                batch.next_states, generator=self._generator, internals=batch.next_internals
            )
            next_q = torch.stack(
                [critic(batch.next_states, next_actions) for critic in self.critic_targets]
            ).amin(0)
            targets = self.td_target(batch.rewards, batch.discounts, next_q - alpha * next_log_prob)
        critic_loss, q, td = self.critic_loss(batch, actions, targets)
        critic_loss = 0.5 * critic_loss
        self.minimize(self.critic_optimizer, critic_loss)

        new_q = torch.stack([critic(batch.states, new_actions) for critic in self.critics])
        actor_loss = (alpha * log_prob - new_q.amin(0)).mean()
        self.minimize(self.actor_optimizer, actor_loss + self.l2_term())

        self._steps += 1
        if self._steps % self.target_update_interval == 0:
            self.sync_targets(actor=False)
        detached = (critic_loss.detach(), actor_loss.detach(), temperature_loss.detach())
        stats = torch.stack((*detached, alpha, q, td.mean()))
        return stats, td

    def _fast_step(
        self, batch: ReplaySample, critics: FastCritics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``_gradient_step`` on the fast path: the same draws, maths and order."""
        actor, size = self._fast_actor, batch.rewards.shape[0]
        states, next_states = critics.states(batch.states), critics.states(batch.next_states)
        new_actions, log_prob = actor.sample(states, self._noise(size), keep=True)
        alpha = float(self.log_alpha.detach().exp())
        temperature_loss = 0.0
        if self._fast_alpha is not None:  # d/d log_alpha of -mean(log_alpha * gap)
            gap = float(np.mean(log_prob + np.float32(self.target_entropy)))
            temperature_loss = -float(self.log_alpha.detach()) * gap
            self._fast_alpha.grad(self.log_alpha).fill_(-gap)
            self._fast_alpha.step()

        next_actions, next_log_prob = actor.sample(next_states, self._noise(size), keep=False)
        next_q = critics.target_min(next_states, next_actions)
        targets = self.td_target(
            batch.rewards.numpy(), batch.discounts.numpy(), next_q - alpha * next_log_prob
        )
        actions = self.scaling.to_unit(batch.actions)
        critic_loss, q, td = critics.step(states, actions, targets, batch.weights.numpy(), 0.5)

        # actor loss mean(alpha * log pi - min_i Qi): d/d min = -1/B, split evenly over ties
        values = critics.values(states, new_actions, 2)
        low = np.minimum.reduce(values)
        actor_loss = float(np.mean(alpha * log_prob - low))
        ties = [(v == low).astype(np.float32) for v in values]
        count = np.add.reduce(ties)
        grad_actions = critics.action_grad([-t / (count * size) for t in ties])
        actor.step(grad_actions, alpha / size)

        self._steps += 1
        if self._steps % self.target_update_interval == 0:
            self.sync_targets(actor=False)
        stats = [critic_loss, actor_loss, temperature_loss, alpha, q, float(td.mean())]
        return torch.tensor(stats), torch.from_numpy(td)

    def fast_policy(self, states: torch.Tensor, deterministic: bool) -> np.ndarray:
        """``policy`` on the stacks: the same noise draw (none when deterministic)."""
        if deterministic:
            return self._fast_actor.mode(states)
        return self._fast_actor.act(states, self._noise(states.shape[0]))

    def _noise(self, size: int) -> torch.Tensor:
        return torch.randn((size, self.scaling.size), generator=self._generator)


class FastGaussian:
    """``GaussianActor`` on dense stacks (body, mean head, log-std head) with its backward.

    ``sample`` is ``GaussianActor.forward`` with given noise ``eps``: ``u = mean + eps * std``,
    ``a = tanh(u)``, ``log pi = sum(-eps^2 / 2 - log_std - log sqrt(2 pi)) - sum c(u)`` with
    ``c(u) = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``. For a loss with d/d a ``g``
    and d/d log pi ``k`` per row (``eps`` is a constant of the reparameterisation)::

        d/du       = g * (1 - a^2) + 2 k a                   (c'(u) = -2 tanh(u))
        d/d mean   = d/du
        d/d log_std = (d/du * eps * std - k) * [LOG_STD_MIN <= raw <= LOG_STD_MAX]
    """

    def __init__(self, actor: GaussianActor, optimizer: FastOptimizer) -> None:
        self.body = DenseStack(actor.network.mlp, optimizer)
        self.mean = DenseStack(actor.mean, optimizer)
        self.log_std = DenseStack(actor.log_std, optimizer)
        self.optimizer = optimizer

    def sample(
        self, states: torch.Tensor, noise: torch.Tensor, keep: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unit actions ``(B, A)`` and log-probs ``(B,)`` (``keep``: for ``step``)."""
        u, actions, log_std, eps, std, raw = self._draw(states, noise, keep)
        log_prob = (-0.5 * eps * eps - log_std - _LOG_SQRT_2PI).sum(-1)
        correction = 2.0 * (_LOG_2 - u - np.logaddexp(np.float32(0.0), -2.0 * u))
        if keep:
            self._saved = (actions, eps, std, (raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX))
        return actions, log_prob - correction.sum(-1)

    def act(self, states: torch.Tensor, noise: torch.Tensor) -> np.ndarray:
        """Unit actions ``(B, A)`` without log-probs (acting: the stacks' NumPy passes)."""
        return self._draw(states, noise, False, acting=True)[1]

    def _draw(
        self, states: torch.Tensor, noise: torch.Tensor, keep: bool, acting: bool = False
    ) -> tuple:
        """``u``, ``tanh(u)``, clamped log-std, ``eps``, std and the raw log-std."""
        if acting:
            features = self.body.infer(states.numpy())
            mean, raw = self.mean.infer(features), self.log_std.infer(features)
        else:
            features = self.body.forward(states, keep=keep)
            mean = self.mean.forward(features, keep=keep).numpy()
            raw = self.log_std.forward(features, keep=keep).numpy()
        log_std = np.minimum(np.maximum(raw, LOG_STD_MIN), LOG_STD_MAX)  # np.clip's wrapper: ~8 us
        eps = noise.numpy()
        std = np.exp(log_std)
        u = mean + eps * std
        return u, np.tanh(u), log_std, eps, std, raw

    def mode(self, states: torch.Tensor) -> np.ndarray:
        """``tanh`` of the mean ``(B, A)`` (deterministic acting), a new array."""
        return np.tanh(self.mean.infer(self.body.infer(states.numpy())))

    def step(self, grad_actions: np.ndarray, grad_log_prob: float) -> None:
        """Back-propagate d loss / d actions and a per-row d loss / d log pi; then Adam."""
        actions, eps, std, inside = self._saved
        grad_u = grad_actions * (1.0 - actions * actions) + (2.0 * grad_log_prob) * actions
        self.mean.grad_out().numpy()[:] = grad_u
        np.multiply(grad_u * eps * std - grad_log_prob, inside, out=self.log_std.grad_out().numpy())
        features = self.mean.backward(input_grad=True)
        features.add_(self.log_std.backward(input_grad=True))
        self.body.backward(features)
        self.optimizer.step()


_LOG_2 = math.log(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


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
