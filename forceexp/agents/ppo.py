"""PPOAgent: PPO's hyperparameters and optimizer (acting: ``on_policy``; update: ``ppo_update``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from forceexp.agents.on_policy import OnPolicyAgent, bounded_schedule, check_flag, check_sizes
from forceexp.agents.ppo_update import PPOUpdate
from forceexp.core.distributions import Bounding
from forceexp.core.fused import FusedPPOStep
from forceexp.core.normalization import reward_normalizer
from forceexp.core.schedules import ScheduleName, check_schedule


class PPOAgent(PPOUpdate, OnPolicyAgent):
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
        optimizer: ``'adam'`` (fused, eps 1e-5), or a Tensorforce optimizer spec
            (``forceexp.core.optimizer_specs``), stepped on the autograd path.
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
        reward_clip: Clip learning rewards to ``[-reward_clip, reward_clip]``, or to
            ``[lower, upper]`` given a pair (Tensorforce's clipping; None: off; SB3 clips
            normalized rewards at 10).
        bounded_actions: ``'clip'``, ``'squash'`` or ``'beta'`` for bounded float actions.
        distributions: Per-action head options, ``{action: {'bounded_actions': 'clip' |
            'squash' | 'beta', 'temperature': 'global' | 'predicted', 'skip_linear':
            bool}}`` (a categorical temperature: learned, or predicted from the state;
            ``skip_linear``: the network output is the logits, no head layer).
        sde: gSDE exploration for float actions (SB3 ``use_sde``; ``docs/agents.md``), a dict
            of ``sample_freq`` (steps per slot between new exploration matrices; -1: only at
            each rollout start), ``log_std_init`` (default 0) and ``full_std`` (default
            true); None: plain Gaussian noise. Uses the autograd update.
        action_value_loss: Add Tensorforce's action-value loss ``0.5 * (log pi(a|s) - A)^2``
            (its ``plus`` objective with ``action_value``; ``A2CAgent``'s option).
        target_kl: Stop an update's epochs early when the approximate KL exceeds 1.5x this.
        horizon: n of n-step advantages (rewards of n steps, then the value) instead of GAE
            (Tensorforce's ``reward_estimation.horizon``; None: GAE).
        return_clipping: ``(lower, upper)`` to clip the returns to before the advantages.
        normalize_returns: Normalize each update's returns to mean 0, std 1 (after clipping)
            before the advantages (Tensorforce's ``return_processing='batch_normalization'``).
        predict_terminal_values: Terminated episodes bootstrap from their final state's
            value like truncated ones (Tensorforce's ``predict_terminal_values``).
        l2_regularization: Tensorforce's L2 penalty weight on the weight matrices (0: off).
        variable_noise: Std of Gaussian noise on the policy parameters while acting
            stochastically (Tensorforce's ``variable_noise``; 0: off).
        exploration: Probability of a uniformly random action per stochastic act (a number
            or schedule dict; Tensorforce's ``exploration``; 0: off). With variable noise or
            exploration, acting takes the torch path instead of NumPy.
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
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
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
        optimizer: str | dict[str, Any] = "adam",
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
        reward_clip: float | tuple[float, float] | None = None,
        bounded_actions: Bounding = "clip",
        distributions: dict[str, dict[str, Any]] | None = None,
        sde: dict[str, Any] | None = None,
        target_kl: float | None = None,
        action_value_loss: bool = False,
        l2_regularization: float = 0.0,
        variable_noise: float = 0.0,
        exploration: float | dict[str, Any] = 0.0,
        horizon: int | None = None,
        return_clipping: tuple[float, float] | None = None,
        normalize_returns: bool = False,
        predict_terminal_values: bool = False,
        fast_update: bool = True,
        schedule_timesteps: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
        state_preprocessing: Any = None,
        reward_processing: Any = None,
    ) -> None:
        check_sizes(rollout_length=rollout_length, minibatch_size=minibatch_size, epochs=epochs)
        check_schedule("agent.lr_schedule", lr_schedule, schedule_timesteps)
        check_schedule("agent.clip_schedule", clip_schedule, schedule_timesteps)
        self.schedules = {  # current values are taken at the start of each update
            "learning_rate": bounded_schedule(
                "learning_rate", learning_rate, lr_schedule, schedule_timesteps, 0.0, 1.0
            ),
            "clip_ratio": bounded_schedule(
                "clip_ratio", clip_ratio, clip_schedule, schedule_timesteps, 0.0, 10.0
            ),
            "entropy_coef": bounded_schedule(
                "entropy_coef", entropy_coef, "constant", schedule_timesteps, -math.inf, math.inf
            ),
        }
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
            state_preprocessing=state_preprocessing,
            reward_processing=reward_processing,
        )
        self.minibatch_size, self.epochs = minibatch_size, epochs
        self.value_clip = value_clip
        self.entropy_coef = self.schedules["entropy_coef"].value(0, 0, 0)  # current value
        self.value_coef = value_coef
        self.max_grad_norm, self.normalize_advantages = max_grad_norm, normalize_advantages
        self.target_kl = target_kl
        self.reward_normalizer = reward_normalizer(
            normalize_rewards, reward_scale, reward_clip, discount, parallel_interactions
        )
        self._build_policy(
            network, policy, baseline, normalize_states, bounded_actions, sde, distributions
        )
        self._build_processing(horizon, return_clipping, normalize_returns, predict_terminal_values)
        plain_acting = self._build_extras(
            l2_regularization, variable_noise, exploration, schedule_timesteps
        )
        self.action_value_loss = check_flag("action_value_loss", action_value_loss)
        fused = self.device.type in ("cpu", "cuda")  # one kernel per step instead of one per tensor
        adam = {"adam": lambda params, lr: torch.optim.Adam(params, lr=lr, eps=1e-5, fused=fused)}
        self._build_optimizer(optimizer, list(self.policy.parameters()), adam)
        self._fused = None
        if self._fast_path(fast_update):
            self._fused = FusedPPOStep(
                self.policy,
                self.optimizer,
                value_coef,
                self.entropy_coef,
                value_clip,
                max_grad_norm,
                normalize_advantages,
                l2_regularization,
            )
        numpy_acting = self._fused is not None and self.device.type == "cpu" and plain_acting
        self._build_rollout(rollout_length, discount, gae_lambda, numpy_acting)
