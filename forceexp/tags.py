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
LOSS_Q = "loss/q"  # DQN's TD loss
LOSS_CRITIC = "loss/critic"  # DDPG/TD3/SAC critic loss (summed over twin critics)
LOSS_ACTOR = "loss/actor"
LOSS_TEMPERATURE = "loss/temperature"  # SAC's entropy-temperature loss
LOSS_IMITATION = "loss/imitation"  # behaviour cloning in pretraining (replay-based agents)
Q_VALUE = "q-value/mean"  # mean Q of the sampled (state, action) pairs
TD_ERROR = "td-error/mean"  # mean absolute TD error of the sampled transitions
EXPLORATION = "exploration"  # epsilon (DQN) or action-noise scale (DDPG/TD3)
TEMPERATURE = "entropy/temperature"  # SAC's entropy coefficient alpha
REWARD_STEP = "reward/step"
DISTRIBUTION = "distribution"
VARIABLES = "variables"
GRAPH = "graph"

#: Summarizer labels; a metric belongs to a label when its tag is the label or starts with
#: ``<label>/`` (``graph`` is the model graph, not a tag).
LABELS = (
    "distribution",
    "entropy",
    "exploration",
    "graph",
    "kl-divergence",
    "learning-rate",
    "loss",
    "q-value",
    "reward",
    "td-error",
    "update-norm",
    "variables",
)
#: Older label names (Tensorforce 0.5) accepted as aliases.
LABEL_ALIASES = {"losses": "loss", "rewards": "reward"}


def label_of(tag: str) -> str:
    """The label a metric tag belongs to (its first path component)."""
    return tag.split("/", 1)[0]
