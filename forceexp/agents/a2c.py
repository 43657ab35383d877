"""A2CAgent: synchronous advantage actor-critic, one policy-gradient step per rollout.

Every ``rollout_length`` steps per parallel slot, with ``B = rollout_length * parallel`` rows:

    A_t   = GAE(gamma, lambda) of the rollout     (lambda = 1: n-step returns minus V(s_t))
    R_t   = A_t + V(s_t)
    L     = -mean(A_t * log pi(a_t | s_t))                       policy loss
            + value_coef   * mean((V(s_t) - R_t)^2)              value loss
            - entropy_coef * mean(H[pi(. | s_t)])                entropy bonus
    theta <- RMSprop (or Adam) step on grad L, gradients clipped to ``max_grad_norm``

It runs on PPO's update machinery (``PPOUpdate``) with one epoch over the whole rollout and the
likelihood ratio left unclipped: at the rollout's own policy the ratio ``pi / pi_old`` is 1 and
``grad(A * ratio) = A * grad log pi``, so PPO's surrogate gives exactly this gradient (the
logged ``loss/policy`` is the surrogate's value, ``-mean(A)``). Plain MLPs on the CPU therefore
take the hand-derived fast step (``forceexp.core.fused``) with an RMSprop step on the same
gradient buffer. ``VPGAgent`` and ``ACAgent`` are this agent with other defaults.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, Literal

import torch

from forceexp.agents.on_policy import OnPolicyAgent, bounded_schedule, check_flag, check_sizes
from forceexp.agents.ppo_update import PPOUpdate
from forceexp.core.distributions import Bounding
from forceexp.core.fused import FusedPPOStep
from forceexp.core.normalization import reward_normalizer
from forceexp.core.optimizers import Synchronization
from forceexp.core.schedules import Constant, ScheduleName, check_schedule
from forceexp.errors import ConfigError, message

OptimizerName = Literal["rmsprop", "adam"]


class A2CAgent(PPOUpdate, OnPolicyAgent):
    """Advantage actor-critic (Stable-Baselines3 A2C): one unclipped gradient step per rollout.

    Defaults are Stable-Baselines3's (``conf/agent/a2c.yaml``; the README maps the names).

    Args:
        states: State spec.
        actions: Action spec.
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        network: Policy network spec (``'auto'``, a layer list, a dict, a module).
        policy: Alias of ``network`` (Tensorforce's name); give one of them.
        baseline: Value network spec (Tensorforce's ``critic``); None shares the policy network.
        rollout_length: Steps per slot between updates (SB3 ``n_steps``).
        learning_rate: Step size: a number or a schedule dict (``docs/schedules.md``).
        lr_schedule: ``'constant'`` or ``'linear'`` (to 0 at ``schedule_timesteps``).
        optimizer: ``'rmsprop'`` (alpha 0.99, eps 1e-5, SB3's default) or ``'adam'`` (eps 1e-5),
            or a Tensorforce optimizer spec (``forceexp.core.optimizers``: another torch
            optimizer, ``evolutionary``, ``plus``, the wrapper keys ``clipping_threshold``,
            ``multi_step``, ``subsampling_fraction``, ``linesearch_iterations``,
            ``doublecheck_update``), stepped on the autograd path.
        discount: Discount factor gamma in [0, 1].
        gae_lambda: GAE lambda in [0, 1] (1: n-step returns to the rollout end; 0: one-step TD).
        entropy_coef: Entropy bonus weight: a number or a schedule dict.
        value_coef: Value loss weight.
        max_grad_norm: Global gradient-norm clipping threshold (None: off).
        normalize_advantages: Normalize the advantages of each rollout to mean 0, std 1.
        subtract_baseline: False: the advantages are the returns (REINFORCE without a
            baseline; the value is still learned, to bootstrap rollout ends and truncations).
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
        horizon: n of n-step advantages (rewards of n steps, then the value) instead of GAE
            (Tensorforce's ``reward_estimation.horizon``; None: GAE).
        return_clipping: ``(lower, upper)`` to clip the returns to before the advantages.
        normalize_returns: Normalize each update's returns to mean 0, std 1 (after clipping)
            before the advantages (Tensorforce's ``return_processing='batch_normalization'``).
        predict_terminal_values: Terminated episodes bootstrap from their final state's
            value like truncated ones (Tensorforce's ``predict_terminal_values``).
        baseline_sync: ``{'update_weight': w, 'sync_frequency': n}``: the baseline network
            takes no gradient steps; every ``n`` updates it moves ``w`` of the way to the policy
            network (Tensorforce's ``synchronization`` baseline optimizer; same shapes needed).
        action_value_loss: Add Tensorforce's action-value loss ``0.5 * (log pi(a|s) - A)^2``
            to the policy's (its ``plus`` objective of ``policy_gradient`` and
            ``action_value``; the action value of a distribution is its log-probability here).
        l2_regularization: Tensorforce's L2 penalty weight on the weight matrices (0: off).
        variable_noise: Std of Gaussian noise on the policy parameters while acting
            stochastically (Tensorforce's ``variable_noise``; 0: off).
        exploration: Probability of a uniformly random action per stochastic act (a number
            or schedule dict; Tensorforce's ``exploration``; 0: off). With variable noise or
            exploration, acting takes the torch path instead of NumPy.
        fast_update: Hand-derived gradient step and NumPy acting for plain MLPs on the CPU.
        schedule_timesteps: Training budget in timesteps that ``'linear'`` decays over.
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'`` (one torch thread for small CPU networks), an int, or None.
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
    """

    name = "a2c"

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        network: Any = "auto",
        policy: Any = None,
        baseline: Any = "auto",
        rollout_length: int = 5,
        learning_rate: float | dict[str, Any] = 7e-4,
        lr_schedule: ScheduleName = "constant",
        optimizer: OptimizerName | dict[str, Any] | str = "rmsprop",
        discount: float = 0.99,
        gae_lambda: float = 1.0,
        entropy_coef: float | dict[str, Any] = 0.0,
        value_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantages: bool = False,
        subtract_baseline: bool = True,
        normalize_states: bool = False,
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | tuple[float, float] | None = None,
        bounded_actions: Bounding = "clip",
        distributions: dict[str, dict[str, Any]] | None = None,
        baseline_sync: dict[str, Any] | None = None,
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
        check_sizes(rollout_length=rollout_length)
        check_schedule("agent.lr_schedule", lr_schedule, schedule_timesteps)
        if not isinstance(optimizer, str | Mapping):
            raise ConfigError(message("agent.optimizer", optimizer, "a name or optimizer spec"))
        self.schedules = {  # read by PPOUpdate at the start of each update
            "learning_rate": bounded_schedule(
                "learning_rate", learning_rate, lr_schedule, schedule_timesteps, 0.0, 1.0
            ),
            "clip_ratio": Constant(math.inf),  # the ratio is never clipped
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
        self.epochs, self.minibatch_size = 1, sys.maxsize  # one step on the whole rollout
        self.value_clip, self.target_kl = None, None
        self.entropy_coef = self.schedules["entropy_coef"].value(0, 0, 0)  # current value
        self.value_coef, self.max_grad_norm = value_coef, max_grad_norm
        self.normalize_advantages, self.subtract_baseline = normalize_advantages, subtract_baseline
        self.reward_normalizer = reward_normalizer(
            normalize_rewards, reward_scale, reward_clip, discount, parallel_interactions
        )
        self._build_policy(
            network,
            policy,
            baseline,
            normalize_states,
            bounded_actions,
            distributions=distributions,
        )
        self._build_processing(horizon, return_clipping, normalize_returns, predict_terminal_values)
        plain_acting = self._build_extras(
            l2_regularization, variable_noise, exploration, schedule_timesteps
        )
        self._build_sync(baseline_sync)
        self.action_value_loss = check_flag("action_value_loss", action_value_loss)
        self._build_optimizer(optimizer, self._trained_parameters(), _OPTIMIZERS)
        self._fused = None
        if self._fast_path(fast_update):
            self._fused = FusedPPOStep(
                self.policy,
                self.optimizer,
                value_coef,
                self.entropy_coef,
                None,
                max_grad_norm,
                normalize_advantages,
                l2_regularization,
            )
        numpy_acting = self._fused is not None and self.device.type == "cpu" and plain_acting
        self._build_rollout(rollout_length, discount, gae_lambda, numpy_acting)

    def _build_sync(self, sync: dict[str, Any] | None) -> None:
        """The baseline's ``Synchronization`` with the policy network, if asked."""
        if sync is None:
            return
        if self.policy.baseline is None:
            raise ConfigError("agent.baseline_sync: needs a separate baseline network")
        unknown = set(sync) - {"update_weight", "sync_frequency"}
        if unknown:
            raise ConfigError(f"agent.baseline_sync: unsupported keys {sorted(unknown)}")
        self.baseline_sync = Synchronization(
            self.policy.network,
            self.policy.baseline,
            sync.get("update_weight"),
            sync.get("sync_frequency"),
            "agent.baseline_sync",
        )

    def state_dict(self) -> dict[str, Any]:
        """``OnPolicyAgent``'s state, plus the updates until the next baseline sync."""
        state = super().state_dict()
        if self.baseline_sync is not None:
            state["baseline_sync_countdown"] = torch.tensor(self.baseline_sync.countdown)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load ``state_dict``'s entries (a missing countdown keeps the current one)."""
        super().load_state_dict(state)
        if self.baseline_sync is not None and "baseline_sync_countdown" in state:
            self.baseline_sync.countdown = int(state["baseline_sync_countdown"])

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters gradient steps move (not a synchronized baseline's own)."""
        params = list(self.policy.parameters())
        if self.baseline_sync is None:
            return params
        synced = {id(p) for p in self.policy.baseline.parameters()}
        synced -= {id(p) for p in self.policy.network.parameters()}  # layers both reuse
        return [p for p in params if id(p) not in synced]


#: A2C's named optimizers: RMSprop as Stable-Baselines3's A2C builds it, or Adam (eps 1e-5)
_OPTIMIZERS = {
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-5),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr, eps=1e-5),
}
