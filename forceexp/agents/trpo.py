"""TRPOAgent: trust-region policy optimization (natural-gradient step, line search, value fit).

Every ``rollout_length`` steps per parallel slot, on the ``B`` rows of the rollout:

    A_t     = GAE(gamma, lambda), normalized to mean 0, std 1; R_t = A_t + V(s_t)
    L(th)   = mean(A_t * pi_th(a_t | s_t) / pi_old(a_t | s_t))         surrogate
              + entropy_coef * mean(H[pi_th(. | s_t)])                 (Tensorforce's entropy)
    KL(th)  = mean KL(pi_old(. | s_t) || pi_th(. | s_t))
    g       = grad L;  F = Hessian of KL at th_old (the Fisher matrix), damped: F + cg_damping I
    s       = F^-1 g   by ``cg_max_steps`` conjugate-gradient steps on products F v
    step    = sqrt(2 max_kl / s.F s) * s                             (KL ~ max_kl if quadratic)
    th      = th_old + c * step, c = 1, shrink, shrink^2, ... (``line_search_max_iter`` tries):
              the first with KL <= max_kl and L > L(old) is kept; none: th stays th_old
              (``only_positive_updates=False``: the first with KL <= max_kl)
    value:  ``value_epochs`` passes of shuffled minibatches of Adam on mean((V(s_t) - R_t)^2)

Tensorforce's ``trpo`` calls ``max_kl`` its ``learning_rate`` and the line search length
``linesearch_iterations``; Stable-Baselines3-contrib's ``TRPO`` calls them ``target_kl`` and
``line_search_max_iter``. The policy and value networks are separate (the value fit must not
move the policy). Recurrent networks re-run the rollout's per-slot sequences from the internals
stored with their first rows, as PPO's update does. The policy step runs on autograd; for plain
MLPs on the CPU acting is NumPy's and the value fit takes hand-derived steps on the shared dense
stacks (``core/dense.py``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch

from forceexp import tags
from forceexp.agents.on_policy import OnPolicyAgent, check_flag, check_sizes
from forceexp.agents.ppo_update import explained_variance, fresh, process_targets
from forceexp.agents.pretraining import Objective, ppo_objective
from forceexp.core.buffers import Batch, Sequences
from forceexp.core.dense import DenseStack, FastOptimizer
from forceexp.core.distributions import Bounding
from forceexp.core.natural_gradient import (
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    kl_divergence,
)
from forceexp.core.normalization import reward_normalizer
from forceexp.core.regularizers import l2_penalty, weight_matrices
from forceexp.core.schedules import Schedule
from forceexp.errors import ConfigError, check_number, message
from forceexp.observers.recorder import Trace


class TRPOAgent(OnPolicyAgent):
    """Trust Region Policy Optimization with a separately fitted value baseline.

    Defaults follow Stable-Baselines3-contrib's ``TRPO`` (``conf/agent/trpo.yaml``).

    Args:
        states: State spec.
        actions: Action spec: int (categorical, masks respected) or float (Gaussian) actions.
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        network: Policy network spec (``'auto'``, a layer list, a dict, a module).
        policy: Alias of ``network`` (Tensorforce's name); give one of them.
        baseline: Value network spec; must be its own network (not None).
        rollout_length: Steps per slot between updates (SB3 ``n_steps``).
        max_kl: Trust-region radius: the mean KL a step may reach (SB3 ``target_kl``).
        cg_max_steps: Conjugate-gradient iterations for ``F^-1 g``.
        cg_damping: Added to the Fisher matrix's diagonal (stabilises CG).
        line_search_shrinking_factor: Step scale factor per rejected try, in (0, 1).
        line_search_max_iter: Tries before the update keeps the old policy.
        value_learning_rate: Adam step size of the value fit.
        value_epochs: Passes of the value fit over each rollout (SB3 ``n_critic_updates``).
        minibatch_size: Rows per value-fit gradient step (SB3 ``batch_size``).
        discount: Discount factor gamma in [0, 1].
        gae_lambda: GAE lambda in [0, 1].
        normalize_advantages: Normalize each rollout's advantages to mean 0, std 1.
        normalize_states: Running mean/std normalization of float states.
        normalize_rewards: Scale rewards by the running std of the discounted return (SB3
            ``VecNormalize(norm_reward=True)``; ``forceexp.core.normalization``).
        reward_scale: Factor on every learning reward (after normalization).
        reward_clip: Clip learning rewards to ``[-reward_clip, reward_clip]`` or ``[lower, upper]``
            (None: off).
        bounded_actions: ``'clip'``, ``'squash'`` or ``'beta'`` for bounded float actions.
        distributions: Per-action head options (``PPOAgent``'s ``distributions``).
        entropy_coef: Weight of the mean entropy added to the surrogate (Tensorforce's
            ``entropy_regularization``; 0: off).
        only_positive_updates: The line search keeps only steps that raise the surrogate
            (Tensorforce's natural-gradient option); False: also steps that do not.
        return_clipping: ``(lower, upper)`` to clip the returns to before the advantages.
        normalize_returns: Normalize each update's returns to mean 0, std 1 (after clipping)
            before the advantages (Tensorforce's ``return_processing='batch_normalization'``).
        fast_update: For plain MLPs on the CPU: act with NumPy and fit the value with
            hand-derived gradient steps (``forceexp.core.dense``); same maths as autograd.
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'`` (one torch thread for small CPU networks), an int, or None.
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
        l2_regularization: L2 penalty weight on the policy's weight matrices, subtracted from
            the surrogate the natural-gradient step maximizes (Tensorforce's; 0: off).
        variable_noise: Std of Gaussian noise on the policy's parameters for each stochastic
            act (Tensorforce's; 0: off).
        exploration: Probability (a number or schedule dict) of a uniformly random action per
            stochastic act, stored as the action taken (Tensorforce's; 0: off).
    """

    name = "trpo"

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        network: Any = "auto",
        policy: Any = None,
        baseline: Any = "auto",
        rollout_length: int = 2048,
        max_kl: float = 0.01,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        value_learning_rate: float = 1e-3,
        value_epochs: int = 10,
        minibatch_size: int = 128,
        discount: float = 0.99,
        gae_lambda: float = 0.95,
        normalize_advantages: bool = True,
        normalize_states: bool = False,
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | tuple[float, float] | None = None,
        bounded_actions: Bounding = "clip",
        distributions: dict[str, dict[str, Any]] | None = None,
        entropy_coef: float = 0.0,
        only_positive_updates: bool = True,
        return_clipping: tuple[float, float] | None = None,
        normalize_returns: bool = False,
        fast_update: bool = True,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
        state_preprocessing: Any = None,
        reward_processing: Any = None,
        l2_regularization: float = 0.0,
        variable_noise: float = 0.0,
        exploration: float | dict[str, Any] = 0.0,
    ) -> None:
        check_sizes(
            rollout_length=rollout_length,
            cg_max_steps=cg_max_steps,
            line_search_max_iter=line_search_max_iter,
            value_epochs=value_epochs,
            minibatch_size=minibatch_size,
        )
        check_number("agent.max_kl", max_kl, 1e-8, 10.0)
        check_number("agent.cg_damping", cg_damping, 0.0, 1e3)
        check_number(
            "agent.line_search_shrinking_factor", line_search_shrinking_factor, 1e-3, 0.999
        )
        check_number("agent.value_learning_rate", value_learning_rate, 0.0, 1.0)
        check_number("agent.entropy_coef", entropy_coef, 0.0, math.inf)
        if baseline is None:
            raise ConfigError(
                message("agent.baseline", None, "a value network spec such as 'auto'")
                + " (TRPO fits the value apart from the policy, so they cannot share a network)"
            )
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
        self.max_kl, self.cg_max_steps, self.cg_damping = max_kl, cg_max_steps, cg_damping
        self.shrink, self.line_search_max_iter = line_search_shrinking_factor, line_search_max_iter
        self.value_epochs, self.minibatch_size = value_epochs, minibatch_size
        self.normalize_advantages = normalize_advantages
        self.entropy_coef = entropy_coef
        self.only_positive_updates = check_flag("only_positive_updates", only_positive_updates)
        self.reward_normalizer = reward_normalizer(
            normalize_rewards, reward_scale, reward_clip, discount, parallel_interactions
        )
        self._build_policy(
            network, policy, baseline, normalize_states, bounded_actions, None, distributions
        )
        self._build_processing(None, return_clipping, normalize_returns)
        self.schedules: dict[str, Schedule] = {}
        plain_acting = self._build_extras(l2_regularization, variable_noise, exploration, None)
        self._policy_params = [
            *self.policy.network.parameters(),
            *self.policy.heads.parameters(),
        ]
        self._policy_weights = weight_matrices([self.policy.network, self.policy.heads])
        value_params = [*self.policy.baseline.parameters(), *self.policy.value_head.parameters()]
        self.optimizer = torch.optim.Adam(value_params, lr=value_learning_rate, eps=1e-5)
        self._fast_value = None
        if self._fast_path(fast_update):
            fast = FastOptimizer(self.optimizer)
            stack = DenseStack([self.policy.baseline.mlp, self.policy.value_head], fast)
            self._fast_value = (stack, fast)
        numpy_acting = self._fast_value is not None and plain_acting
        self._build_rollout(rollout_length, discount, gae_lambda, numpy_acting)

    def _update(self) -> dict[str, float]:
        """One natural-gradient policy step, then the value fit, on the stored rollout.

        With recurrent networks the rollout stays as per-slot sequences, re-run from the
        internals stored with their first rows (as PPO's update does).
        """
        rollout = self.buffer.sequences if self._internals else self.buffer.batch
        with torch.inference_mode():
            raw = self._targets(rollout(self._bootstrap, self.discount, self.gae_lambda))
        self.buffer.carry_over()
        if self._internals:
            return self._update_sequence_batch(Sequences(*(fresh(x) for x in raw)))
        return self._update_batch(Batch(*(fresh(x) for x in raw)))

    def _targets(self, batch: Any) -> Any:
        """``Batch`` or ``Sequences`` with the returns processed as asked (``process_targets``)."""
        return process_targets(batch, self.return_clipping, self.normalize_returns)

    def _update_sequence_batch(self, seq: Sequences) -> dict[str, float]:
        """TRPO's update on per-slot sequences (recurrent networks)."""
        return self._update_batch(seq.rows(), seq)

    def _update_batch(self, batch: Batch, seq: Sequences | None = None) -> dict[str, float]:
        """The policy step and value fit on rows (``seq``: the same rows as sequences)."""
        advantages = batch.advantages
        if self.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        self.policy.train()
        metrics = self._policy_step(batch, advantages, seq)
        metrics[tags.LOSS_VALUE] = self._fit_value(batch, seq)
        self.policy.eval()
        metrics[tags.EXPLAINED_VARIANCE] = explained_variance(batch.value, batch.returns)
        return metrics

    def learn_from_traces(
        self, traces: list[Trace], objective: Objective, num_updates: int
    ) -> dict[str, float]:
        """Recorded episodes as on-policy experience for TRPO's update (``'replay'`` only).

        Raises:
            ConfigError: ``objective='imitation'``.
        """
        if objective != "replay":
            raise ConfigError(message("pretrain.objective", objective, "'replay' for trpo"))
        return ppo_objective(self, traces, objective, num_updates)

    def _features(self, batch: Batch, seq: Sequences | None) -> torch.Tensor:
        """Policy features ``(B, F)`` of the rollout rows (re-run sequences if recurrent)."""
        if seq is None:
            return self.policy.network(batch.states)
        return self.policy.sequence_features(seq.states, seq.internals, seq.starts)[seq.valid]

    def _surrogate(
        self, batch: Batch, advantages: torch.Tensor, old: dict, seq: Sequences | None
    ) -> tuple:
        """``(L, mean KL(old || current), current distributions)`` on the rollout rows."""
        features = self._features(batch, seq)
        dists = self.policy.distributions(features, batch.masks)
        log_prob = sum(d.log_prob(batch.actions[name]) for name, d in dists.items())
        surrogate = (advantages * (log_prob - batch.log_prob).exp()).mean()
        if self.entropy_coef:
            surrogate = (
                surrogate + self.entropy_coef * sum(d.entropy() for d in dists.values()).mean()
            )
        surrogate = surrogate - l2_penalty(self.l2_regularization, self._policy_weights)
        kl = sum(kl_divergence(old[name], d) for name, d in dists.items()).mean()
        return surrogate, kl, dists

    def _policy_step(
        self, batch: Batch, advantages: torch.Tensor, seq: Sequences | None
    ) -> dict[str, float]:
        """Conjugate-gradient natural step scaled to ``max_kl``, then the backtracking search."""
        params = self._policy_params
        with torch.no_grad():
            old = self.policy.distributions(self._features(batch, seq), batch.masks)
        surrogate, kl, dists = self._surrogate(batch, advantages, old, seq)
        entropy = float(sum(d.entropy() for d in dists.values()).mean().detach())
        gradient = flat_grad(surrogate, params)
        fisher = fisher_vector_product(kl, params, self.cg_damping)
        direction = conjugate_gradient(fisher, gradient, self.cg_max_steps)
        curvature = direction.dot(fisher(direction))
        step = torch.sqrt(2 * self.max_kl / curvature.clamp(min=1e-12)) * direction
        start = torch.cat([p.detach().reshape(-1) for p in params])
        scale, accepted_kl, accepted = 1.0, 0.0, False
        with torch.no_grad():
            for _ in range(self.line_search_max_iter):
                _assign(params, start + scale * step)
                trial, trial_kl, _ = self._surrogate(batch, advantages, old, seq)
                improves = trial > surrogate or not self.only_positive_updates
                if trial_kl <= self.max_kl and improves:
                    accepted, accepted_kl, surrogate = True, float(trial_kl), trial
                    break
                scale *= self.shrink
            if not accepted:
                _assign(params, start)
        norm = float(step.norm()) * scale if accepted else 0.0
        return {
            tags.LOSS_POLICY: -float(surrogate.detach()),
            tags.ENTROPY: entropy,
            tags.KL_DIVERGENCE: accepted_kl,
            tags.UPDATE_NORM: norm,
        }

    def _fit_value(self, batch: Batch, seq: Sequences | None = None) -> float:
        """``value_epochs`` passes of Adam minibatch steps on the squared error to the returns.

        A recurrent baseline steps on minibatches of whole sequences (about ``minibatch_size``
        rows each), re-run from their stored first internals.
        """
        size, chunk, total, steps = len(batch.returns), self.minibatch_size, 0.0, 0
        if seq is not None and getattr(self.policy.baseline, "internal_shapes", None):
            size, length = seq.valid.shape[1], seq.valid.shape[0]
            chunk, step = max(1, self.minibatch_size // length), partial(self._sequence_step, seq)
        elif self._fast_value is None:
            step = partial(self._value_step, batch.states, batch.returns)
        else:
            names = self.policy.state_specs.names()
            states = torch.cat([batch.states[name].flatten(1) for name in names], 1)
            step = partial(self._fast_value_step, states, batch.returns)
        for _ in range(self.value_epochs):
            order = torch.randperm(size, device=self.device)
            for start in range(0, size, chunk):
                total += step(order[start : start + chunk])
                steps += 1
        return total / steps

    def _value_step(self, states: dict, returns: torch.Tensor, idx: torch.Tensor) -> float:
        """One autograd Adam step on rows ``idx``; their mean squared value error."""
        value = self.policy.value({name: x[idx] for name, x in states.items()})
        return self._descend((value - returns[idx]).pow(2).mean())

    def _sequence_step(self, seq: Sequences, cols: torch.Tensor) -> float:
        """One Adam step of a recurrent baseline on the sequences of slots ``cols``."""
        values = self.policy.sequence_values(
            {name: x[:, cols] for name, x in seq.states.items()},
            {path: x[cols] for path, x in seq.internals.items()},
            seq.starts[:, cols],
        )
        valid = seq.valid[:, cols]
        return self._descend((values[valid] - seq.returns[:, cols][valid]).pow(2).mean())

    def _descend(self, loss: torch.Tensor) -> float:
        """One Adam step of the value parameters on ``loss``; its value."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _fast_value_step(
        self, states: torch.Tensor, returns: torch.Tensor, idx: torch.Tensor
    ) -> float:
        """As ``_value_step`` with the dense stack's hand-derived backward and fused Adam."""
        stack, fast = self._fast_value
        value = stack.forward(states[idx]).numpy().reshape(-1)
        diff = value - returns[idx].numpy()
        np.multiply(diff, 2.0 / len(diff), out=stack.grad_out().numpy().reshape(-1))
        stack.backward()
        fast.step()
        return float(np.vdot(diff, diff)) / len(diff)


def _assign(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy a flat vector into the parameters in place (NumPy acting keeps views of them)."""
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
