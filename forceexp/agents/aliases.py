"""Tensorforce's agent argument names, translated once into ours (``Agent.create`` applies it).

Our names stay canonical; Tensorforce's are aliases. ``translate(agent, kwargs)`` runs the
table of the agent's registry name (plus ``COMMON``) over the given keyword arguments, in
table order, and returns canonical ones. An alias whose value has no meaning here raises a
``ConfigError`` naming the argument. Adding an agent's aliases means adding an entry to
``AGENT_ALIASES`` (keyed by the agent's registry name); the agent's own file stays as it is.
``docs/migrating_from_tensorforce.md`` documents every entry with its unit conversion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from forceexp.core.optimizer_specs import is_default
from forceexp.errors import ConfigError, message

log = logging.getLogger(__name__)

#: values that mean "feature off" in Tensorforce specs
_OFF = (None, False, 0, 0.0, "none")


@dataclass
class Context:
    """What a translation may read: the agent name, the kwargs so far and their defaults."""

    agent: str
    kwargs: dict[str, Any]
    defaults: dict[str, Any]

    def get(self, name: str) -> Any:
        """The value of canonical argument ``name``: given, else the constructor default."""
        return self.kwargs.get(name, self.defaults.get(name))


Translation = Callable[[Any, Context], dict[str, Any]]


def _rename(canonical: str) -> Translation:
    """An alias with the same meaning and unit as ``canonical``."""
    return lambda value, ctx: {canonical: value}


def _only_off(name: str, reason: str) -> Translation:
    """Accept only the "off" values (None, False, 0); anything else has no meaning here."""

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        if value not in _OFF:
            raise ConfigError(message(f"agent.{name}", value, f"None or 0 ({reason})"))
        return {}

    return translate


def _without_network(name: str) -> Translation:
    """Only "off" for agents without a network (the table of every agent with one renames)."""

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        if value not in _OFF:
            expected = f"None or 0 (agent {ctx.agent!r} has no network)"
            raise ConfigError(message(f"agent.{name}", value, expected))
        return {}

    return translate


def _accepted(name: str, note: str) -> Translation:
    """Accept any value that has no effect here, logging what is not reproduced."""

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        log.info("agent.%s=%r accepted: %s", name, value, note)
        return {}

    return translate


# ---------------------------------------------------------------------------- common
def _config(value: Any, ctx: Context) -> dict[str, Any]:
    """Tensorforce's ``config`` dict: ``seed`` and ``device`` map; TF-only keys are no-ops."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(message("agent.config", value, "a dict (Tensorforce's config)"))
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "seed":
            out["seed"] = item
        elif key == "device":
            out["device"] = {"CPU": "cpu", "GPU": "cuda"}.get(str(item).upper(), str(item).lower())
        elif key == "enable_int_action_masking" and item is False:
            raise ConfigError(message("agent.config.enable_int_action_masking", item, "True"))
        elif key not in _CONFIG_NO_OPS:
            valid = ", ".join(("seed", "device", *_CONFIG_NO_OPS))
            raise ConfigError(f"agent.config: unknown key {key!r}; valid: {valid}")
    return out


#: config keys without effect here: TensorFlow switches, naming, observe buffering, masking
_CONFIG_NO_OPS = (
    "buffer_observe",
    "create_debug_assertions",
    "create_tf_assertions",
    "eager_mode",
    "enable_int_action_masking",
    "name",
    "tf_log_level",
)

COMMON: dict[str, Translation] = {
    "config": _config,
    "variable_noise": _without_network("variable_noise"),
    "l2_regularization": _without_network("l2_regularization"),
}
#: Tensorforce's per-agent regularizers, offered by every agent with a network
_REGULARIZERS: dict[str, Translation] = {
    "l2_regularization": _rename("l2_regularization"),
    "variable_noise": _rename("variable_noise"),
}


# ---------------------------------------------------------------------------- PPO
def _network(name: str) -> Translation:
    """A network spec; ``{'type': 'auto', 'rnn': False}`` drops the (off) ``rnn`` key.

    Any other ``rnn`` (a horizon) is the auto network's own LSTM argument, passed on.
    """
    canonical = "baseline" if name == "baseline_network" else name

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        auto = isinstance(value, Mapping) and value.get("type") == "auto"
        if auto and "rnn" in value and (value["rnn"] is None or value["rnn"] is False):
            value = {key: item for key, item in value.items() if key != "rnn"}
        return {canonical: value}

    return translate


def _episodes_to_rollout(name: str, episodes: Any, ctx: Context) -> int:
    """``episodes`` full-length episodes as timesteps per parallel slot (rounded up)."""
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ConfigError(message(f"agent.{name}", episodes, "an int >= 1 (episodes)"))
    limit = ctx.get("max_episode_timesteps")
    if limit is None:
        raise ConfigError(
            f"agent.{name}: {episodes!r} counts episodes, which needs max_episode_timesteps to "
            "convert to rollout_length (timesteps per slot); give max_episode_timesteps (or an "
            "environment), or rollout_length instead"
        )
    return math.ceil(episodes * limit / (ctx.get("parallel_interactions") or 1))


def _batch_size(value: Any, ctx: Context) -> dict[str, Any]:
    """PPO ``batch_size`` (episodes) -> ``rollout_length`` = batch x limit / parallel slots."""
    return {"rollout_length": _episodes_to_rollout("batch_size", value, ctx)}


def _update_frequency(value: Any, ctx: Context) -> dict[str, Any]:
    """PPO updates on disjoint rollouts: a frequency below the batch is noted, not reproduced."""
    if value is None or (isinstance(value, float) and value == 1.0):
        return {}
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(message("agent.update_frequency", value, "a number > 0"))
    log.warning(
        "agent.update_frequency=%r: forceexp's PPO updates once per rollout on disjoint data "
        "(Tensorforce's overlapping batches are not reproduced); the update interval is the "
        "batch size",
        value,
    )
    return {}


def _optimizer(name: str) -> Translation:
    """``learning_rate`` as a number/schedule, or an optimizer dict (Adam only)."""

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not ({"optimizer", "learning_rate"} & set(value)):
            return {"learning_rate": value}
        spec = dict(value)
        kind = spec.pop("optimizer", spec.pop("type", "adam"))
        if isinstance(kind, Mapping):  # {"type": "multi_step", "optimizer": {...}, ...}
            return translate({**kind, **{k: v for k, v in spec.items() if k != "num_steps"}}, ctx)
        if kind != "adam":
            raise ConfigError(message(f"agent.{name}.optimizer", kind, "'adam'"))
        out = {"learning_rate": spec.pop("learning_rate", ctx.get("learning_rate"))}
        if "multi_step" in spec:
            out["epochs"] = spec.pop("multi_step")
        if spec:
            raise ConfigError(
                f"agent.{name}: unsupported optimizer keys {sorted(spec)}; "
                "valid: optimizer, learning_rate, multi_step"
            )
        return out

    return translate


def _ppo_optimizer(value: Any, ctx: Context) -> dict[str, Any]:
    """PPO's ``optimizer``: Adam (the fast path) as before; another name or spec passed on.

    ``multi_step`` and ``subsampling_fraction`` stay PPO's epochs and minibatches.
    """
    if value in (None, "adam"):
        return {}
    if isinstance(value, str):
        return {"optimizer": value}
    if not isinstance(value, Mapping) or isinstance(value.get("optimizer"), Mapping):
        return _optimizer("optimizer")(value, ctx)  # a rate, or a nested multi_step spec
    spec, out = dict(value), {}
    if "multi_step" in spec:
        out["epochs"] = spec.pop("multi_step")
    if "subsampling_fraction" in spec:
        out.update(_subsampling_fraction(spec.pop("subsampling_fraction"), ctx))
    rate = spec.get("learning_rate")
    if is_default(spec):
        return {**out, **({"learning_rate": rate} if "learning_rate" in spec else {})}
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        out["learning_rate"] = rate  # the rate logged; the spec keeps it
    return {**out, "optimizer": spec}


def _optimizer_rate(value: Any) -> Any:
    """A learning rate given as a number/schedule or an Adam optimizer dict (its rate)."""
    if isinstance(value, Mapping) and ({"optimizer", "learning_rate"} & set(value)):
        kind = value.get("optimizer", value.get("type", "adam"))
        if kind != "adam":
            raise ConfigError(message("agent.learning_rate.optimizer", kind, "'adam'"))
        return value.get("learning_rate", 1e-3)
    return value


def _subsampling_fraction(value: Any, ctx: Context) -> dict[str, Any]:
    """Fraction (0, 1] of the rollout rows per minibatch (an int: rows) -> ``minibatch_size``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(message("agent.subsampling_fraction", value, "a float in (0, 1]"))
    if isinstance(value, int):
        return {"minibatch_size": value}
    if value > 1.0:
        raise ConfigError(message("agent.subsampling_fraction", value, "a float in (0, 1]"))
    rows = ctx.get("rollout_length") * (ctx.get("parallel_interactions") or 1)
    return {"minibatch_size": max(1, round(value * rows))}


def _processing(
    name: str, normalize: str | None = None, clipping: str | None = None
) -> Translation:
    """A reward/return/advantage processing spec as our argument, or refused by name.

    None is off; ``linear_normalization``-like specs set the switch ``normalize`` names;
    ``dict(type='clipping', lower, upper)`` sets the bounds argument ``clipping`` names.
    """

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        if value in _OFF:
            return {}
        kind = value.get("type") if isinstance(value, Mapping) else value
        if normalize is not None and kind in _NORMALIZATIONS:
            return {normalize: True}
        if clipping is not None and kind == "clipping" and isinstance(value, Mapping):
            unknown = set(value) - {"type", "lower", "upper"}
            if unknown:
                raise ConfigError(f"agent.{name}: unknown clipping keys {sorted(unknown)}")
            return {clipping: (value.get("lower", -math.inf), value.get("upper", math.inf))}
        expected = "None" + (" or 'linear_normalization'" if normalize else "")
        expected += " or dict(type='clipping', lower, upper)" if clipping else ""
        raise ConfigError(message(f"agent.{name}", value, expected))

    return translate


#: Tensorforce's advantage normalizations; all mean "per-update mean 0, std 1" here
_NORMALIZATIONS = ("linear_normalization", "normalization", "batch_normalization")


def _state_preprocessing(value: Any, ctx: Context) -> dict[str, Any]:
    """Tensorforce's ``state_preprocessing`` is ours (``forceexp.core.preprocessing``)."""
    return {} if value in _OFF else {"state_preprocessing": value}


def _reward_processing(clipping: bool) -> Translation:
    """One clipping layer -> ``reward_clip`` (where the agent has it); other layers a pipeline.

    Any other layer or list of layers runs as ``reward_processing`` on each observed reward.
    """

    def translate(value: Any, ctx: Context) -> dict[str, Any]:
        if value in _OFF:
            return {}
        single = value[0] if isinstance(value, list | tuple) and len(value) == 1 else value
        if clipping and isinstance(single, Mapping) and single.get("type") == "clipping":
            return _processing("reward_processing", clipping="reward_clip")(single, ctx)
        return {"reward_processing": value}

    return translate


def _update(value: Any, ctx: Context) -> dict[str, Any]:
    """``update=dict(unit, batch_size, frequency, start)`` (or an int: timesteps)."""
    spec = {"unit": "timesteps", "batch_size": value} if isinstance(value, int) else value
    if not isinstance(spec, Mapping) or "batch_size" not in spec:
        raise ConfigError(message("agent.update", value, "an int or dict(unit, batch_size, ...)"))
    unknown = set(spec) - {"unit", "batch_size", "frequency", "start"}
    if unknown:
        raise ConfigError(f"agent.update: unknown keys {sorted(unknown)}")
    if spec.get("start") not in _OFF:
        raise ConfigError(message("agent.update.start", spec["start"], "None or 0 for PPO"))
    unit, size = spec.get("unit", "timesteps"), spec["batch_size"]
    if unit == "episodes":
        out = {"rollout_length": _episodes_to_rollout("update.batch_size", size, ctx)}
    elif unit == "timesteps":
        if not isinstance(size, int) or size < 1:
            raise ConfigError(message("agent.update.batch_size", size, "an int >= 1"))
        out = {"rollout_length": math.ceil(size / (ctx.get("parallel_interactions") or 1))}
    else:
        raise ConfigError(message("agent.update.unit", unit, "'timesteps' or 'episodes'"))
    _update_frequency(spec.get("frequency"), ctx)
    return out


def _beta(value: Any, ctx: Context) -> dict[str, Any]:
    """``use_beta_distribution=True`` -> ``bounded_actions='beta'``."""
    return {"bounded_actions": "beta"} if value else {}


def _baseline_optimizer(value: Any, ctx: Context) -> dict[str, Any]:
    """One Adam optimizer steps policy and baseline here; a separate one is not reproduced."""
    if value not in _OFF:
        log.warning(
            "agent.baseline_optimizer=%r: forceexp's %s steps policy and baseline with one "
            "optimizer (learning_rate, value_coef); the separate optimizer is not used",
            value,
            ctx.agent,
        )
    return {}


PPO: dict[str, Translation] = {
    "network": _network("network"),
    "policy": _network("policy"),
    "baseline": _network("baseline"),
    "baseline_network": _network("baseline_network"),
    "batch_size": _batch_size,
    "update": _update,
    "update_frequency": _update_frequency,
    "learning_rate": _optimizer("learning_rate"),
    "optimizer": _ppo_optimizer,
    "multi_step": _rename("epochs"),
    "subsampling_fraction": _subsampling_fraction,
    "likelihood_ratio_clipping": _rename("clip_ratio"),
    "entropy_regularization": _rename("entropy_coef"),
    "use_beta_distribution": _beta,
    "memory": _accepted("memory", "PPO's rollout buffer is sized by rollout_length"),
    "baseline_optimizer": _baseline_optimizer,
    "baseline_objective": _only_off("baseline_objective", "the value loss is fixed (MSE)"),
    "predict_terminal_values": _rename("predict_terminal_values"),
    "state_preprocessing": _state_preprocessing,
    "preprocessing": _state_preprocessing,
    "reward_processing": _reward_processing(clipping=True),
    "return_processing": _processing(
        "return_processing", "normalize_returns", clipping="return_clipping"
    ),
    "advantage_processing": _processing("advantage_processing", "normalize_advantages"),
    "exploration": _rename("exploration"),
    "l2_regularization": _rename("l2_regularization"),
    "variable_noise": _rename("variable_noise"),
}


# ---------------------------------------------------------------------------- A2C, AC, VPG, TRPO
def _timesteps_batch(value: Any, ctx: Context) -> dict[str, Any]:
    """A2C/AC ``batch_size`` (timesteps) -> ``rollout_length`` per parallel slot (rounded up)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(message("agent.batch_size", value, "an int >= 1 (timesteps)"))
    return {"rollout_length": math.ceil(value / (ctx.get("parallel_interactions") or 1))}


def _horizon(value: Any, ctx: Context) -> dict[str, Any]:
    """Reward-estimation ``horizon`` as GAE lambda or n-step advantages.

    'episode' -> ``gae_lambda=1``; 1 -> one-step TD (``gae_lambda=0``); n > 1 -> ``horizon=n``;
    an int parameter dict (a schedule) -> ``horizon`` (its value at each update).
    """
    if value is None:
        return {}
    if value == "episode":
        return {"gae_lambda": 1.0}
    if isinstance(value, Mapping):
        return {"horizon": value}
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(message("agent.horizon", value, "an int >= 1 or 'episode'"))
    return {"gae_lambda": 0.0} if value == 1 else {"horizon": value}


def _critic_optimizer(value: Any, ctx: Context) -> dict[str, Any]:
    """A float is the critic loss weight (``value_coef``); an optimizer spec is not reproduced."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"value_coef": float(value)}
    return _baseline_optimizer(value, ctx)


def _trpo_baseline_optimizer(value: Any, ctx: Context) -> dict[str, Any]:
    """``dict(optimizer='adam', learning_rate, multi_step)`` -> value_learning_rate/epochs."""
    if value in _OFF:
        return {}
    out = _optimizer("baseline_optimizer")(value, ctx)
    return {
        {"learning_rate": "value_learning_rate", "epochs": "value_epochs"}[key]: item
        for key, item in out.items()
    }


def _whole_batch(value: Any, ctx: Context) -> dict[str, Any]:
    """TRPO's natural gradient sees the whole rollout: only ``subsampling_fraction=1``."""
    if value != 1.0:
        raise ConfigError(message("agent.subsampling_fraction", value, "1.0 (whole rollout)"))
    return {}


#: what A2C, AC, VPG and TRPO share with PPO's table
_ON_POLICY = {
    key: PPO[key]
    for key in (
        "network",
        "policy",
        "update",
        "update_frequency",
        "use_beta_distribution",
        "predict_terminal_values",
        "state_preprocessing",
        "preprocessing",
        "reward_processing",
        "return_processing",
        "advantage_processing",
        "exploration",
        "l2_regularization",
        "variable_noise",
    )
}
_ON_POLICY["memory"] = _accepted("memory", "the rollout buffer is sized by rollout_length")
ACTOR_CRITIC: dict[str, Translation] = {
    **_ON_POLICY,
    "batch_size": _timesteps_batch,
    "learning_rate": lambda value, ctx: {"learning_rate": _optimizer_rate(value)},
    "horizon": _horizon,
    "critic": _network("baseline"),
    "critic_network": _network("baseline"),
    "critic_optimizer": _critic_optimizer,
    "entropy_regularization": _rename("entropy_coef"),
}
VPG: dict[str, Translation] = {
    **_ON_POLICY,
    "batch_size": _batch_size,
    "learning_rate": lambda value, ctx: {"learning_rate": _optimizer_rate(value)},
    "baseline": _network("baseline"),
    "baseline_network": _network("baseline_network"),
    "baseline_optimizer": _baseline_optimizer,
    "baseline_objective": PPO["baseline_objective"],
    "entropy_regularization": _rename("entropy_coef"),
}
TRPO: dict[str, Translation] = {
    **_ON_POLICY,
    "batch_size": _batch_size,
    "learning_rate": _rename("max_kl"),
    "linesearch_iterations": _rename("line_search_max_iter"),
    "subsampling_fraction": _whole_batch,
    "baseline": _network("baseline"),
    "baseline_network": _network("baseline_network"),
    "baseline_optimizer": _trpo_baseline_optimizer,
    "baseline_objective": PPO["baseline_objective"],
    "entropy_regularization": _rename("entropy_coef"),
    "predict_terminal_values": _only_off(
        "predict_terminal_values", "only truncated episodes bootstrap from the value"
    ),
}


# ---------------------------------------------------------------------------- replay-based
def _train_freq(value: Any, ctx: Context) -> dict[str, Any]:
    """``update_frequency``: timesteps between updates; a float is relative to ``batch_size``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(message("agent.update_frequency", value, "a number > 0"))
    if isinstance(value, float):
        value = max(1, round(value * ctx.get("batch_size")))
    return {"train_freq": value, "gradient_steps": 1}


def _start_updating(value: Any, ctx: Context) -> dict[str, Any]:
    """``start_updating`` (timesteps; None: Tensorforce starts at ``batch_size``)."""
    return {"learning_starts": ctx.get("batch_size") if value is None else value}


def _huber_loss(value: Any, ctx: Context) -> dict[str, Any]:
    """``huber_loss``: None or 0 -> squared error; 1.0 -> Huber (the only threshold here)."""
    if value in _OFF:
        return {"loss": "mse"}
    if value != 1.0:
        raise ConfigError(message("agent.huber_loss", value, "None (squared error) or 1.0"))
    return {"loss": "huber"}


def _target_sync_frequency(value: Any, ctx: Context) -> dict[str, Any]:
    """Target syncs every ``value`` updates -> every ``value * train_freq`` timesteps."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(message("agent.target_sync_frequency", value, "an int >= 1 (updates)"))
    return {"target_update_interval": value * ctx.get("train_freq")}


def _n_step(value: Any, ctx: Context) -> dict[str, Any]:
    """``horizon`` (an int) -> ``n_step``; a parameter dict cannot vary stored n-step returns."""
    if isinstance(value, Mapping):
        raise ConfigError(
            message("agent.horizon", value, f"an int >= 1 for {ctx.agent}")
            + " (the replay memory fixes each transition's n-step return when it is stored, "
            "so the horizon cannot follow a schedule)"
        )
    return {"n_step": value}


REPLAY: dict[str, Translation] = {
    "network": _network("network"),
    "update_frequency": _train_freq,
    "start_updating": _start_updating,
    "learning_rate": lambda value, ctx: {"learning_rate": _optimizer_rate(value)},
    "horizon": _n_step,
    "predict_terminal_values": _only_off(
        "predict_terminal_values", "only truncated episodes bootstrap from the target"
    ),
    "state_preprocessing": _state_preprocessing,
    "reward_processing": _reward_processing(clipping=True),
    "return_processing": _processing("return_processing", clipping="return_clipping"),
    "entropy_regularization": _only_off("entropy_regularization", "no entropy term here"),
    **_REGULARIZERS,
}
DQN = {
    **REPLAY,
    "huber_loss": _huber_loss,
    "target_update_weight": _rename("tau"),
    "target_sync_frequency": _target_sync_frequency,
}
DPG = {
    **REPLAY,
    "critic_network": _network("critic"),
    "critic_optimizer": _accepted("critic_optimizer", "actor and critic share learning_rate"),
    "use_beta_distribution": _accepted(
        "use_beta_distribution", "DDPG's actor is deterministic (tanh), not a distribution"
    ),
    "entropy_regularization": _accepted(
        "entropy_regularization",
        "DDPG's actor is deterministic (no distribution, no entropy); in Tensorforce's DPG the "
        "term reaches only the stddev outputs, which acting at temperature 0 does not use",
    ),
}

#: TD3's and SAC's: the regularizers and return clipping
CONTINUOUS = {**_REGULARIZERS, "return_processing": REPLAY["return_processing"]}

#: per agent registry name; agents without an entry get ``COMMON`` only
AGENT_ALIASES: dict[str, dict[str, Translation]] = {
    "ppo": PPO,
    **dict.fromkeys(("a2c", "ac"), ACTOR_CRITIC),
    "vpg": VPG,
    "trpo": TRPO,
    **dict.fromkeys(("dqn", "double_dqn", "dueling_dqn"), DQN),
    **dict.fromkeys(("dpg", "ddpg"), DPG),
    **dict.fromkeys(("td3", "sac"), CONTINUOUS),
}


def translate(agent: str, kwargs: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Translate Tensorforce argument names and values of ``agent`` into canonical kwargs.

    Args:
        agent: The agent's registry name (``'ppo'``, ...).
        kwargs: The given constructor arguments (aliases and canonical names mixed).
        defaults: The constructor's defaults, for conversions that depend on other arguments.

    Raises:
        ConfigError: An alias value without a meaning here, or an alias given next to the
            canonical argument it sets.
    """
    table = {**COMMON, **AGENT_ALIASES.get(agent, {})}
    out = {key: value for key, value in kwargs.items() if key not in table}
    given = set(out)
    ctx = Context(agent, out, defaults)
    for key, translation in table.items():
        if key not in kwargs:
            continue
        for canonical, value in translation(kwargs[key], ctx).items():
            if canonical in given and canonical != key and out[canonical] != value:
                raise ConfigError(
                    f"agent.{key}: sets {canonical}={value!r}, but {canonical}="
                    f"{out[canonical]!r} is given too; give one of them"
                )
            out[canonical] = value
    return out
