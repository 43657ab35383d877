"""PPOUpdate: the learning half of ``PPOAgent`` (epochs, minibatches, clipped-surrogate steps).

A mixin: it uses the attributes ``PPOAgent.__init__`` sets (policy, optimizer, buffer, the
hyperparameters, ``_fused`` and ``_internals``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch

from forceexp import tags
from forceexp.agents.pretraining import Objective, ppo_objective
from forceexp.core.buffers import Batch, Sequences
from forceexp.core.fused import STEP_METRICS, Rows, normalized, unsupported_reason
from forceexp.core.optimizer_specs import build_optimizer
from forceexp.core.optimizers import Synchronization, UpdateOptimizer, update_norm
from forceexp.core.regularizers import l2_penalty
from forceexp.observers.recorder import Trace

_KL = STEP_METRICS.index(tags.KL_DIVERGENCE)
#: ``(log_prob, entropy, value)`` of rows under the current policy
Evaluated = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: ``(log_prob, advantages, returns, value)`` of rows, stored when acting
Stored = tuple[torch.Tensor, ...]


class PPOUpdate:
    """Clipped-surrogate PPO updates over the rollout buffer (mixed into ``PPOAgent``).

    A2C, VPG and AC reuse it with one epoch on the whole rollout and no clipping (at the
    rollout's own policy the ratio is 1, so the surrogate's gradient is the policy gradient).
    """

    #: False: the advantages are the returns themselves (REINFORCE without a baseline)
    subtract_baseline: bool = True
    #: weight of ``l2 / 2 * sum(w ** 2)`` over ``policy.weights()`` in the loss
    l2_regularization: float = 0.0
    #: ``(lower, upper)`` the returns are clipped to before advantages (None: off)
    return_clipping: tuple[float, float] | None = None
    #: normalize the returns of each update to mean 0, std 1 before the advantages
    normalize_returns: bool = False
    #: add ``0.5 * (log pi(a|s) - A)^2``, Tensorforce's action-value loss (``plus`` objective)
    action_value_loss: bool = False
    #: moves the baseline network toward the policy network after each update (None: off)
    baseline_sync: Synchronization | None = None
    #: keep each update's returns and advantages in ``kept_targets`` and the last acting
    #: batch's distributions before it in ``kept_acting`` (tracking; off: no cost)
    keep_targets: bool = False

    def learn_from_traces(
        self, traces: list[Trace], objective: Objective, num_updates: int
    ) -> dict[str, float]:
        """Learn from recorded episodes (``Agent.pretrain``, ``experience``/``update``).

        ``'replay'``: the episodes as on-policy experience for this agent's update;
        ``'imitation'``: behaviour cloning.
        """
        return ppo_objective(self, traces, objective, num_updates)

    def _build_optimizer(
        self, spec: str | Mapping[str, Any], params: list[torch.nn.Parameter], default: Any
    ) -> None:
        """``self.optimizer``: ``default(params, lr)`` for its name, else a Tensorforce spec.

        A spec (``forceexp.core.optimizer_specs``) runs on the autograd path; its torch
        optimizers without a rate of their own follow the ``learning_rate`` schedule.
        """
        lr = self.schedules["learning_rate"].value(0, 0, 0)
        if isinstance(spec, str) and spec in default:
            self.optimizer = default[spec](params, lr)
            return
        self.optimizer = build_optimizer(spec, params)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _fast_path(self, fast_update: bool) -> bool:
        """Whether updates take the hand-derived fast path (why not is logged)."""
        return self._use_fast_path(fast_update, self._autograd_reason)

    def _autograd_reason(self) -> str | None:
        """Why updates need autograd (None: the fast path applies).

        The policy's own limits, an optimizer spec, baseline synchronization or the plus
        objective's action-value loss.
        """
        reason = unsupported_reason(self.policy)
        if reason is None and not isinstance(self.optimizer, torch.optim.Optimizer):
            reason = f"optimizer {self.optimizer.description}"
        if reason is None and self.baseline_sync is not None:
            reason = "baseline synchronization"
        if reason is None and self.action_value_loss:
            reason = "the plus objective's action-value loss"
        return reason

    def _update(self) -> dict[str, float]:
        """One PPO update over the stored rollout; returns its metrics."""
        if self._internals:
            return self._update_sequences()
        with torch.inference_mode():
            batch = self._targets(
                self.buffer.batch(self._bootstrap, self.discount, self.gae_lambda, self.horizon)
            )
        self.buffer.carry_over()
        return self._update_batch(Batch(*(fresh(x) for x in batch)))

    def _targets(self, batch: Any) -> Any:
        """``batch`` with this agent's return processing (``process_targets``)."""
        processed = process_targets(
            batch, self.return_clipping, self.normalize_returns, self.subtract_baseline
        )
        if self.keep_targets:
            self.kept_targets = self._update_targets(batch, processed)
            kept = getattr(self.policy, "kept", None)  # the last act's inputs, before the update
            if kept is not None:
                self.kept_acting = (self.policy.step_distributions(*kept), kept)
        return processed

    def _update_targets(self, batch: Any, processed: Any) -> dict[str, np.ndarray]:
        """Returns and advantages ``(N,)`` of the update's rows, before and after processing.

        Tensorforce's ``update-return``/``update-processed-return`` (return processing) and
        ``update-advantage``/``update-processed-advantage`` (the per-update normalization of
        ``advantage_processing``, over the whole update).
        """
        valid = getattr(batch, "valid", None)

        def rows(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1) if valid is None else x[valid]

        returns, processed_returns, advantages = (
            rows(x).float().cpu().numpy()
            for x in (batch.returns, processed.returns, processed.advantages)
        )
        final = advantages
        if self.normalize_advantages and len(advantages) > 1:
            final = normalized(advantages)
        return {
            "return": returns,
            "processed-return": processed_returns,
            "advantage": advantages,
            "processed-advantage": final,
        }

    def tracked_losses(self, metrics: dict[str, float]) -> dict[str, float]:
        """Tensorforce's loss names for an update's ``metrics``: objective + regularization.

        The policy's regularization is the entropy bonus (``-entropy_coef * entropy``) plus the
        L2 penalty of its weights, the baseline's the L2 penalty of the baseline network's own
        weights (after the update). The loss trained is ``policy-loss + value_coef *
        baseline-loss``.
        """
        baseline = self.policy.baseline
        own = set() if baseline is None else {id(p) for p in baseline.parameters()}
        weights = self.policy.weights()
        with torch.no_grad():
            l2_policy = float(
                l2_penalty(self.l2_regularization, [w for w in weights if id(w) not in own])
            )
            l2_baseline = float(
                l2_penalty(self.l2_regularization, [w for w in weights if id(w) in own])
            )
        policy_regularization = l2_policy - self.entropy_coef * metrics[tags.ENTROPY]
        baseline_objective = metrics[tags.LOSS_VALUE]
        return {
            "agent/policy-objective-loss": metrics[tags.LOSS_POLICY],
            "agent/policy-regularization-loss": policy_regularization,
            "agent/policy-loss": metrics[tags.LOSS_POLICY] + policy_regularization,
            "agent/baseline-objective-loss": baseline_objective,
            "agent/baseline-regularization-loss": l2_baseline,
            "agent/baseline-loss": baseline_objective + l2_baseline,
        }

    def _update_batch(self, batch: Batch) -> dict[str, float]:
        """``epochs`` passes of minibatch steps over a flattened rollout (fast path if possible)."""
        size = batch.log_prob.shape[0]
        if self._fused is None:
            step = partial(self._minibatch_step, batch)
        else:
            rows = self._fused_rows(batch)
            whole = size <= self.minibatch_size  # every step sees all rows: normalize once
            if whole and self.normalize_advantages and size > 1:
                rows = rows._replace(advantages=normalized(rows.advantages))
            step = partial(self._fused_minibatch_step, rows, normalize=not whole)
        metrics = self._epochs(size, self.minibatch_size, step)
        metrics[tags.EXPLAINED_VARIANCE] = explained_variance(batch.value, batch.returns)
        return metrics

    def _update_sequences(self) -> dict[str, float]:
        """Recurrent PPO update over minibatches of whole per-slot sequences.

        Each sequence is re-run from the internals stored with its first row; internals reset
        to zero where an episode starts.
        """
        with torch.inference_mode():
            seq = self._targets(
                self.buffer.sequences(self._bootstrap, self.discount, self.gae_lambda, self.horizon)
            )
        self.buffer.carry_over()
        return self._update_sequence_batch(Sequences(*(fresh(x) for x in seq)))

    def _update_sequence_batch(self, seq: Sequences) -> dict[str, float]:
        """``epochs`` passes of steps over minibatches of whole sequences (columns of ``seq``)."""
        num_slots, length = seq.valid.shape[1], seq.valid.shape[0]
        per_step = max(1, self.minibatch_size // max(length, 1))
        metrics = self._epochs(num_slots, per_step, partial(self._sequence_step, seq))
        metrics[tags.EXPLAINED_VARIANCE] = explained_variance(
            seq.value[seq.valid], seq.returns[seq.valid]
        )
        return metrics

    def _epochs(
        self,
        size: int,
        chunk: int,
        step: Callable[[torch.Tensor | None, float], torch.Tensor | np.ndarray],
    ) -> dict[str, float]:
        """Run ``epochs`` shuffled passes of ``step(indices, clip)`` over ``size`` items.

        A pass that fits in one chunk steps on all items (``indices=None``: no shuffle or copy
        needed, the loss is a mean). As in SB3, every minibatch's approximate KL (of the
        policy before its step) is checked against ``1.5 * target_kl``: past it, that
        minibatch takes no step and the update ends. Returns mean metrics (one host sync per
        update without ``target_kl``, one per minibatch with it).
        """
        lr, clip = self._schedules()
        max_kl = None if self.target_kl is None else 1.5 * self.target_kl
        sums = 0.0  # a tensor (autograd path) or array (fast path) after the first step
        steps = 0
        autograd = self._fused is None  # the fast path never runs the modules: no mode switch
        if autograd:
            self.policy.train()
        for _ in range(self.epochs):
            order = None if size <= chunk else torch.randperm(size, device=self.device)
            for start in range(0, size, chunk):
                stats = step(None if order is None else order[start : start + chunk], clip, max_kl)
                sums = sums + stats
                steps += 1
                if max_kl is not None and float(stats[_KL]) > max_kl:
                    break
            else:
                continue
            break
        if autograd:
            self.policy.eval()
        if self.baseline_sync is not None:
            self.baseline_sync()
        metrics = dict(zip(STEP_METRICS, (sums / steps).tolist(), strict=True))
        metrics[tags.LOSS_TOTAL] = (  # linear in the pieces, so the mean of the step totals
            metrics[tags.LOSS_POLICY]
            + self.value_coef * metrics[tags.LOSS_VALUE]
            - self.entropy_coef * metrics[tags.ENTROPY]
        )
        metrics[tags.LEARNING_RATE] = lr
        return metrics

    def _sequence_step(
        self, seq: Sequences, cols: torch.Tensor | None, clip: float, max_kl: float | None = None
    ) -> torch.Tensor:
        """One gradient step on the sequences of slots ``cols`` (None: all)."""
        if cols is None:
            cols = torch.arange(seq.valid.shape[1], device=self.device)

        def rows(sub: torch.Tensor | None) -> tuple[Evaluated, Stored]:
            picked = cols if sub is None else cols[sub]
            states = {name: x[:, picked] for name, x in seq.states.items()}
            internals = {path: x[picked] for path, x in seq.internals.items()}
            features = self.policy.sequence_features(states, internals, seq.starts[:, picked])
            values = self.policy.sequence_values(states, internals, seq.starts[:, picked])
            valid = seq.valid[:, picked]
            evaluated = self.policy.evaluate_features(
                features[valid],
                {name: x[valid] for name, x in states.items()},
                {name: x[:, picked][valid] for name, x in seq.actions.items()},
                {name: x[:, picked][valid] for name, x in seq.masks.items()},
                None if values is None else values[valid],
            )
            stored = (seq.log_prob, seq.advantages, seq.returns, seq.value)
            return evaluated, tuple(x[:, picked][valid] for x in stored)

        return self._gradient_step(rows, len(cols), clip, max_kl)

    def _schedules(self) -> tuple[float, float]:
        """Current learning rate (also set on the optimizer) and clip ratio.

        Also sets the current ``entropy_coef`` (here and on the fast path).
        """
        now = {
            name: schedule.value(self.timesteps, self.episodes, self.updates)
            for name, schedule in self.schedules.items()
        }
        self.entropy_coef = now["entropy_coef"]
        if self._fused is not None:
            self._fused.entropy_coef = self.entropy_coef
        for group in self.optimizer.param_groups:
            group["lr"] = now["learning_rate"]
        return now["learning_rate"], now["clip_ratio"]

    def _minibatch_step(
        self, batch: Batch, idx: torch.Tensor | None, clip: float, max_kl: float | None = None
    ) -> torch.Tensor:
        """One autograd gradient step on rows ``idx`` of the rollout (None: all rows)."""
        if idx is not None:
            batch = _take(batch, idx)

        def rows(sub: torch.Tensor | None) -> tuple[Evaluated, Stored]:
            part = batch if sub is None else _take(batch, sub)
            evaluated = self.policy.evaluate(part.states, part.actions, part.masks)
            return evaluated, (part.log_prob, part.advantages, part.returns, part.value)

        return self._gradient_step(rows, batch.log_prob.shape[0], clip, max_kl)

    def _fused_rows(self, batch: Batch) -> Rows:
        """The rollout as the fast path takes it: NumPy views, states concatenated, flat actions."""
        states = torch.cat(
            [batch.states[name].flatten(1) for name in self.policy.state_specs.names()], 1
        ).numpy()
        name = next(iter(self.policy.heads))
        actions = batch.actions[name].reshape(states.shape[0], -1).numpy()
        mask = batch.masks.get(name)
        if mask is not None:
            mask = mask.reshape(states.shape[0], actions.shape[1], -1).numpy()
        values = (batch.log_prob, batch.advantages, batch.returns, batch.value)
        return Rows(states, actions, mask, *(x.numpy() for x in values))

    def _fused_minibatch_step(
        self,
        rows: Rows,
        idx: torch.Tensor | None,
        clip: float,
        max_kl: float | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """One hand-derived gradient step (``forceexp.core.fused``) on rows ``idx`` (None: all)."""
        if idx is not None:
            idx = idx.numpy()
            rows = Rows(*(None if x is None else x[idx] for x in rows))
        lr = self.optimizer.param_groups[0]["lr"]
        return self._fused.step(rows, clip, lr, normalize, max_kl)

    def _gradient_step(
        self,
        rows: Callable[[torch.Tensor | None], tuple[Evaluated, Stored]],
        size: int,
        clip: float,
        max_kl: float | None = None,
    ) -> torch.Tensor:
        """Clipped-surrogate loss and one optimizer step; metrics in ``STEP_METRICS`` order.

        Args:
            rows: ``rows(sub)``: current ``(log_prob, entropy, value)`` and stored
                ``(log_prob, advantages, returns, value)`` of rows ``sub`` of the step's data
                (None: all ``size``).
            size: Rows (sequences, for recurrent updates) in the step's data.
            clip: Likelihood-ratio clipping epsilon.
            max_kl: No step when the approximate KL of the rows exceeds this (gradient norms
                are reported as 0 then); None: always step.
        """
        loss, terms = self._loss(*rows(None), clip)
        policy_loss, value_loss, entropy_mean, kl, clipped_fraction = terms
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        if max_kl is not None and float(kl) > max_kl:
            norm = torch.zeros((), device=kl.device)  # too far from the rollout's policy
        elif isinstance(self.optimizer, UpdateOptimizer):  # a Tensorforce optimizer spec
            first = [loss]  # the loss already built, before any parameter changed

            def closure(sub: torch.Tensor | None) -> torch.Tensor:
                built = first.pop() if first else None
                return (
                    built if sub is None and built is not None else self._loss(*rows(sub), clip)[0]
                )

            norm = update_norm(self.optimizer.step(closure, size)).to(kl.device)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.optimizer.step()
        return torch.stack(
            (
                policy_loss,
                value_loss,
                entropy_mean,
                kl,
                clipped_fraction,
                norm,
                norm.clamp(max=max_norm),
            )
        ).detach()

    def _loss(
        self, evaluated: Evaluated, old: Stored, clip: float
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The update's loss and its detached terms (policy, value, entropy, KL, clip fraction).

        Args:
            evaluated: Current ``(log_prob, entropy, value)`` of the rows.
            old: Stored ``(log_prob, advantages, returns, value)`` of the same rows.
            clip: Likelihood-ratio clipping epsilon.
        """
        log_prob, entropy, value = evaluated
        old_log_prob, advantages, returns, old_value = old
        if self.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        log_ratio = log_prob - old_log_prob
        ratio = log_ratio.exp()
        policy_loss = -torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip, 1 + clip))
        policy_loss = policy_loss.mean()
        value_loss = (value - returns).pow(2)
        if self.value_clip is not None:
            delta = (value - old_value).clamp(-self.value_clip, self.value_clip)
            clipped = old_value + delta
            value_loss = torch.max(value_loss, (clipped - returns).pow(2))
        value_loss = value_loss.mean()
        entropy_mean = entropy.mean()
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy_mean
        if self.action_value_loss:  # Tensorforce's plus objective: + its action-value loss
            loss = loss + 0.5 * (log_prob - advantages).pow(2).mean()
        loss = loss + l2_penalty(self.l2_regularization, self.policy.weights())
        with torch.no_grad():
            kl = ((ratio - 1) - log_ratio).mean()
            clipped_fraction = ((ratio - 1).abs() > clip).float().mean()
        terms = (policy_loss.detach(), value_loss.detach(), entropy_mean.detach())
        return loss, (*terms, kl, clipped_fraction)


def process_targets(
    batch: Any,
    return_clipping: tuple[float, float] | None,
    normalize_returns: bool,
    subtract_baseline: bool = True,
) -> Any:
    """A ``Batch`` or ``Sequences`` with the returns processed and the advantages set.

    ``return_clipping`` clips the returns and ``normalize_returns`` then scales them to
    mean 0, std 1 over the update's (valid) rows; either makes the advantages the processed
    returns minus the values. Without a baseline the returns are the advantages.
    """
    returns = batch.returns
    if return_clipping is not None:
        returns = returns.clamp(*return_clipping)
    if normalize_returns:
        valid = getattr(batch, "valid", torch.ones_like(returns, dtype=torch.bool))
        mean, std = returns[valid].mean(), returns[valid].std(correction=0)
        returns = torch.where(valid, (returns - mean) / (std + 1e-8), 0.0)
    if returns is not batch.returns:
        batch = batch._replace(returns=returns, advantages=returns - batch.value)
    if not subtract_baseline:
        batch = batch._replace(advantages=batch.returns)
    return batch


def _take(batch: Batch, idx: torch.Tensor) -> Batch:
    """Rows ``idx`` of every field of a batch."""
    return Batch(
        *({name: t[idx] for name, t in x.items()} if isinstance(x, dict) else x[idx] for x in batch)
    )


def fresh(x: Any) -> Any:
    """Inference tensors cannot enter autograd; clone them into normal tensors."""
    if isinstance(x, dict):
        return {name: t.clone() for name, t in x.items()}
    return x.clone()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """``1 - Var(returns - values) / Var(returns)`` (NaN for constant returns)."""
    var = float(returns.var()) if returns.numel() > 1 else 0.0
    return float("nan") if var == 0 else 1.0 - float((returns - values).var()) / var
