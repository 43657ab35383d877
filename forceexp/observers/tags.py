"""Metric names: the one contract shared by agents, TensorBoard and MLflow."""

from __future__ import annotations

EPISODE_RETURN = "reward/episode_return"
EPISODE_LENGTH = "reward/episode_length"
LOSS_POLICY = "loss/policy"
LOSS_VALUE = "loss/value"
LOSS_TOTAL = "loss/total"
ENTROPY = "entropy"
KL_DIVERGENCE = "kl-divergence"
CLIP_FRACTION = "loss/clip_fraction"
UPDATE_NORM = "update-norm/unclipped"
UPDATE_NORM_CLIPPED = "update-norm/clipped"
LEARNING_RATE = "learning-rate"
EXPLAINED_VARIANCE = "loss/explained_variance"
STEPS_PER_SECOND = "time/steps_per_second"
EVAL_RETURN = "eval/return_mean"
