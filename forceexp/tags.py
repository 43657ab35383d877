"""Metric names: the one contract shared by agents, TensorBoard and MLflow.

The names follow CleanRL's groups (``charts/``, ``losses/``, ``eval/``), spelled as CleanRL spells
them where it logs the same quantity, so dashboards built for CleanRL runs read these too.
Tensorforce's summarizer labels (``loss``, ``reward``, ...) select sets of these tags through
``TAG_LABELS``; docs/tracking.md has the table of every tag.
"""

from __future__ import annotations

# charts/: per-episode and schedule values
EPISODE_RETURN = "charts/episodic_return"
EPISODE_LENGTH = "charts/episodic_length"
REWARD_STEP = "charts/step_reward"  # mean reward of the acting batch, every `frequency` steps
LEARNING_RATE = "charts/learning_rate"
EXPLORATION = "charts/exploration_rate"  # epsilon (DQN) or action-noise scale (DDPG/TD3)
STEPS_PER_SECOND = "charts/SPS"  # timesteps / seconds since the first stored act (CleanRL's SPS)
# losses/: values of each update
LOSS_POLICY = "losses/policy_loss"
LOSS_VALUE = "losses/value_loss"
LOSS_TOTAL = "losses/total_loss"
ENTROPY = "losses/entropy"
KL_DIVERGENCE = "losses/approx_kl"
CLIP_FRACTION = "losses/clipfrac"
EXPLAINED_VARIANCE = "losses/explained_variance"
UPDATE_NORM = "losses/grad_norm"  # gradient norm before clipping
UPDATE_NORM_CLIPPED = "losses/grad_norm_clipped"
LOSS_Q = "losses/td_loss"  # DQN's TD loss
LOSS_CRITIC = "losses/qf_loss"  # DDPG/TD3/SAC critic loss (summed over twin critics)
LOSS_ACTOR = "losses/actor_loss"
LOSS_TEMPERATURE = "losses/alpha_loss"  # SAC's entropy-temperature loss
TEMPERATURE = "losses/alpha"  # SAC's entropy coefficient alpha
LOSS_IMITATION = "losses/imitation_loss"  # behaviour cloning in pretraining (replay agents)
Q_VALUE = "losses/q_values"  # mean Q of the sampled (state, action) pairs
TD_ERROR = "losses/td_error"  # mean absolute TD error of the sampled transitions
# eval/: deterministic evaluation episodes (during training and the final evaluation)
EVAL_RETURN = "eval/mean_return"
EVAL_RETURN_STD = "eval/std_return"
# Tensorforce's own summaries, kept under its label names
DISTRIBUTION = "distribution"  # distribution/<action>-<parameter>
VARIABLES = "variables"  # histograms variables/<parameter name>
GRAPH = "graph"  # the model graph, not a tag

#: The Tensorforce summarizer label that selects each tag.
TAG_LABELS = {
    EPISODE_RETURN: "reward",
    EPISODE_LENGTH: "reward",
    REWARD_STEP: "reward",
    EVAL_RETURN: "reward",
    EVAL_RETURN_STD: "reward",
    LEARNING_RATE: "learning-rate",
    EXPLORATION: "exploration",
    STEPS_PER_SECOND: "time",
    LOSS_POLICY: "loss",
    LOSS_VALUE: "loss",
    LOSS_TOTAL: "loss",
    CLIP_FRACTION: "loss",
    EXPLAINED_VARIANCE: "loss",
    LOSS_Q: "loss",
    LOSS_CRITIC: "loss",
    LOSS_ACTOR: "loss",
    LOSS_TEMPERATURE: "loss",
    LOSS_IMITATION: "loss",
    ENTROPY: "entropy",
    TEMPERATURE: "entropy",
    KL_DIVERGENCE: "kl-divergence",
    UPDATE_NORM: "update-norm",
    UPDATE_NORM_CLIPPED: "update-norm",
    Q_VALUE: "q-value",
    TD_ERROR: "td-error",
}
#: Label of a tag missing from ``TAG_LABELS``, by its group (first path component).
GROUP_LABELS = {
    "charts": "reward",
    "losses": "loss",
    "eval": "reward",
    DISTRIBUTION: DISTRIBUTION,
    VARIABLES: VARIABLES,
}
#: Summarizer labels (``graph`` is the model graph, not a tag).
LABELS = tuple(sorted({*TAG_LABELS.values(), DISTRIBUTION, VARIABLES, GRAPH}))
#: Older label names (Tensorforce 0.5) accepted as aliases.
LABEL_ALIASES = {"losses": "loss", "rewards": "reward"}
#: ``results.json`` keys logged to MLflow under a tag of this vocabulary; other numeric keys
#: are logged as ``results/<key>``.
RESULT_TAGS = {
    "eval_return_mean": EVAL_RETURN,
    "eval_return_std": EVAL_RETURN_STD,
    "steps_per_second": STEPS_PER_SECOND,
}


def label_of(tag: str) -> str:
    """The summarizer label that selects ``tag`` (``TAG_LABELS``, else by its group)."""
    if tag in TAG_LABELS:
        return TAG_LABELS[tag]
    group = tag.split("/", 1)[0]
    return GROUP_LABELS.get(group, group)


def result_tag(key: str) -> str:
    """The MLflow metric name of a ``results.json`` key (``RESULT_TAGS`` or ``results/<key>``)."""
    return RESULT_TAGS.get(key, f"results/{key}")
