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
REWARD_STEP = "reward/step"
DISTRIBUTION = "distribution"
VARIABLES = "variables"
GRAPH = "graph"

#: Summarizer labels; a metric belongs to a label when its tag is the label or starts with
#: ``<label>/`` (``graph`` is the model graph, not a tag).
LABELS = (
    "distribution",
    "entropy",
    "graph",
    "kl-divergence",
    "learning-rate",
    "loss",
    "reward",
    "update-norm",
    "variables",
)
#: Older label names (Tensorforce 0.5) accepted as aliases.
LABEL_ALIASES = {"losses": "loss", "rewards": "reward"}


def label_of(tag: str) -> str:
    """The label a metric tag belongs to (its first path component)."""
    return tag.split("/", 1)[0]
