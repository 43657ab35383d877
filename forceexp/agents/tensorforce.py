"""Tensorforce's generic ``agent='tensorforce'``: its components mapped onto one of our agents.

Tensorforce builds every agent from ``policy``, ``memory``, ``update``, ``optimizer``,
``objective``, ``reward_estimation`` and ``baseline*`` specs. Here those specs pick the agent
whose maths they describe and become that agent's Tensorforce-style arguments (translated by
``forceexp.agents.aliases`` as usual):

==================================================================  ==========
objective / optimizer / reward_estimation                           agent
==================================================================  ==========
``policy_gradient`` with an optimizer ``natural_gradient``          ``trpo``
``policy_gradient`` with ``clipping_value`` (ratio clipping)         ``ppo``
``policy_gradient``, ``horizon='episode'``                           ``vpg``
``policy_gradient``, n-step horizon, ``estimate_advantage=True``     ``a2c``
``policy_gradient``, n-step horizon                                  ``ac``
``action_value``                                                     ``dqn``
``deterministic_policy_gradient``                                    ``dpg``
==================================================================  ==========

For ``a2c``/``ac``/``vpg`` an optimizer spec other than plain Adam is passed on whole (their
autograd path, ``forceexp.core.optimizers``; ``ppo`` keeps ``multi_step`` and
``subsampling_fraction`` as its epochs and minibatches) and a ``synchronization`` baseline
optimizer is ``baseline_sync``. ``plus`` of ``policy_gradient`` and ``action_value`` is the
policy gradient with ``action_value_loss=True`` (``ppo``, ``a2c``, ``ac``, ``vpg``).

Anything else raises a ``ConfigError`` naming the component that does not map. The agent
returned is the mapped one (``agent.name`` is e.g. ``'ppo'``, and so is its saved spec).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from forceexp.core.optimizer_specs import is_default
from forceexp.errors import ConfigError, message
from forceexp.specs import parse_specs

log = logging.getLogger(__name__)

#: objective types with a counterpart here
OBJECTIVES = ("policy_gradient", "action_value", "deterministic_policy_gradient")
_ON_POLICY = ("ppo", "vpg", "a2c", "ac", "trpo")
#: ``reward_estimation`` keys passed on as the agent's own (Tensorforce-named) arguments
_ESTIMATION_ARGS = (
    "discount",
    "reward_processing",
    "return_processing",
    "advantage_processing",
    "predict_terminal_values",
)
#: ``reward_estimation`` keys that select the agent (or are implied by it)
_ESTIMATION_SHAPE = ("horizon", "predict_horizon_values", "estimate_advantage", "gae_decay")
_DEFAULT_BASELINE_OBJECTIVES = (None, "state_value", "action_value")
#: ``natural_gradient`` options and the trpo arguments they are (Tensorforce-named ones are
#: translated by ``aliases``: ``learning_rate`` is the KL bound)
_NATURAL_GRADIENT_ARGS = (
    ("learning_rate", "learning_rate"),
    ("linesearch_iterations", "linesearch_iterations"),
    ("subsampling_fraction", "subsampling_fraction"),
    ("only_positive_updates", "only_positive_updates"),
    ("cg_max_iterations", "cg_max_steps"),
    ("cg_damping", "cg_damping"),
)
#: agents taking an optimizer spec whole and baseline synchronization (``baseline_sync``)
_SPEC_AGENTS = ("a2c", "ac", "vpg")
#: agents with the plus objective's ``action_value_loss``
_PLUS_AGENTS = ("ppo", *_SPEC_AGENTS)


def _type(spec: Any, key: str = "type") -> Any:
    """The ``type`` of a spec dict (``optimizer`` for optimizers), or the spec itself."""
    if isinstance(spec, Mapping):
        return spec.get(key, spec.get("type"))
    return spec


def _objective_type(spec: Any, path: str) -> Any:
    """An objective's type; ``dict(type='value', value='state'|'action')`` is its named form."""
    kind = _type(spec)
    if kind != "value":
        return kind
    value = spec.get("value") if isinstance(spec, Mapping) else None
    if value not in ("state", "action"):
        raise ConfigError(message(f"{path}.value", value, "'state' or 'action'"))
    return f"{value}_value"


def _plus(objective: Any) -> Any:
    """``plus`` of ``policy_gradient`` and ``action_value``: the policy-gradient part.

    Raises:
        ConfigError: Other parts (only that pair has a counterpart: ``action_value_loss``).
    """
    keys = ("objective1", "objective2")
    parts = [objective.get(key) for key in keys] if isinstance(objective, Mapping) else [None] * 2
    kinds = [
        _objective_type(part, f"agent.objective.objective{i}") for i, part in enumerate(parts, 1)
    ]
    if kinds != ["policy_gradient", "action_value"]:
        raise ConfigError(
            message(
                "agent.objective",
                objective,
                "plus of objective1='policy_gradient' and objective2='action_value'",
            )
        )
    return parts[0]


def _choose(objective: Any, optimizer: Any, estimation: Mapping[str, Any]) -> str:
    """The agent whose update the objective, optimizer and reward estimation describe."""
    if _type(objective) == "plus":
        name = _choose(_plus(objective), optimizer, estimation)
        if name not in _PLUS_AGENTS:
            raise ConfigError(
                message("agent.objective", objective, "no plus objective", f"{name} has none")
            )
        return name
    kind = _objective_type(objective, "agent.objective")
    if kind not in OBJECTIVES:
        raise ConfigError(
            message("agent.objective", objective, f"one of {', '.join(OBJECTIVES)}")
            + " (other Tensorforce objectives have no forceexp agent)"
        )
    if kind == "action_value":
        return "dqn"
    if kind == "deterministic_policy_gradient":
        return "dpg"
    spec = objective if isinstance(objective, Mapping) else {}
    if _type(optimizer, "optimizer") == "natural_gradient":
        return "trpo"
    if spec.get("clipping_value") not in (None, 0, 0.0):
        return "ppo"
    if estimation.get("horizon", "episode") == "episode":
        return "vpg"
    return "a2c" if estimation.get("estimate_advantage") else "ac"


_BOUNDED_TRANSFORMS = {None: None, "clipping": "clip", "tanh": "squash"}


def _distribution(name: str, spec: Any) -> dict[str, Any]:
    """One Tensorforce distribution spec as our head options (``ActorCritic`` distributions)."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("type", None)
    path = f"agent.policy.distributions.{name}"
    out: dict[str, Any] = {}
    if kind == "beta":
        out["bounded_actions"] = "beta"
    elif kind == "categorical":
        out.update(_categorical(spec))
    elif kind == "gaussian":
        if spec.pop("stddev_mode", "global") != "global":
            raise ConfigError(
                message(f"{path}.stddev_mode", "predicted", "'global'")
                + " (the log-std here is a learned state-independent parameter)"
            )
        transform = spec.pop("bounded_transform", None)
        if transform not in _BOUNDED_TRANSFORMS:
            raise ConfigError(
                message(f"{path}.bounded_transform", transform, "'clipping' or 'tanh'")
            )
        if transform is not None:
            out["bounded_actions"] = _BOUNDED_TRANSFORMS[transform]
    elif kind != "bernoulli":
        raise ConfigError(message(f"{path}.type", kind, "bernoulli, beta, categorical or gaussian"))
    if spec:
        raise ConfigError(f"{path}: unsupported keys {sorted(spec)}")
    return out


def _categorical(spec: dict[str, Any]) -> dict[str, Any]:
    """Pop a categorical's ``temperature_mode`` and ``skip_linear`` as our head options."""
    out: dict[str, Any] = {}
    mode = spec.pop("temperature_mode", None)
    if mode is not None:
        out["temperature"] = mode
    if spec.pop("skip_linear", False):
        out["skip_linear"] = True
    return out


def _per_action(distributions: Any, actions: Any) -> dict[str, Any]:
    """Each action's distribution spec, looked up as Tensorforce does.

    By the action's name, else by its type (``'float'``); a single unnamed action also takes
    a bare spec. Entries matching no action are unused (logged), as in Tensorforce.
    """
    specs = parse_specs(actions, "action")
    if specs.single and (isinstance(distributions, str) or "type" in distributions):
        return {specs.names()[0]: distributions}
    out = {}
    for name, spec in specs.items:
        item = distributions.get(name, distributions.get(spec.type))
        if item is not None:
            out[name] = item
    unused = sorted(set(distributions) - set(specs.names()) - {s.type for _, s in specs.items})
    if unused:
        log.info("agent.policy.distributions: %s match no action and are unused", unused)
    return out


def _network(spec: Any, path: str, actions: Any = None) -> tuple[Any, dict[str, Any]]:
    """A policy/baseline spec as ``(network spec, extra arguments)``.

    ``dict(network=..., distributions=...)`` (Tensorforce's parametrized-distributions policy,
    with or without its ``type``) gives the network and per-action head options.
    """
    if not isinstance(spec, Mapping):
        return spec, {}
    kind = spec.get("type")
    if kind is not None and not str(kind).startswith("parametrized"):
        return spec, {}
    if kind is None and not {"network", "distributions"} & set(spec):
        return spec, {}
    extra: dict[str, Any] = {}
    if spec.get("use_beta_distribution"):
        extra["use_beta_distribution"] = True
    if spec.get("distributions"):
        if path != "policy":
            raise ConfigError(f"agent.{path}.distributions: only the policy has distributions")
        extra["distributions"] = {
            name: _distribution(name, item)
            for name, item in _per_action(spec["distributions"], actions).items()
        }
    unknown = set(spec) - {"type", "network", "temperature", "use_beta_distribution"}
    unknown -= {"state_value_mode", "distributions", "single_output"}
    if unknown:
        raise ConfigError(f"agent.{path}: unsupported keys {sorted(unknown)}")
    network = spec.get("network", "auto")
    if spec.get("single_output", True) is False:
        network = _multi_output(network, path)
    return network, extra


def _multi_output(network: Any, path: str) -> dict[str, Any]:
    """``single_output=False``: the layered network spec that also outputs its embeddings."""
    if isinstance(network, list | tuple):
        return {"type": "layered", "layers": list(network), "single_output": False}
    if isinstance(network, Mapping) and network.get("type") == "layered":
        return {**network, "single_output": False}
    raise ConfigError(
        message(f"agent.{path}.network", network, "a list of layers")
        + " (single_output=False reads registered '<action>-embedding' tensors)"
    )


def _optimizer_args(name: str, optimizer: Any) -> dict[str, Any]:
    """The optimizer spec as the chosen agent's Tensorforce arguments."""
    if not isinstance(optimizer, Mapping):
        return {} if optimizer is None else {"learning_rate": optimizer}
    spec = dict(optimizer)
    out: dict[str, Any] = {}
    if name in _SPEC_AGENTS and not is_default(spec):  # runs on the autograd path
        rate = spec.get("learning_rate")
        return {"optimizer": spec, **({"learning_rate": rate} if _is_number(rate) else {})}
    if name == "trpo":
        spec.pop("optimizer", spec.pop("type", None))
        out = {key: spec.pop(source) for source, key in _NATURAL_GRADIENT_ARGS if source in spec}
        if spec:
            raise ConfigError(f"agent.optimizer: unsupported natural_gradient keys {sorted(spec)}")
        return out
    if "subsampling_fraction" in spec:
        out["subsampling_fraction"] = spec.pop("subsampling_fraction")
    if name == "a2c":
        out["optimizer"] = "adam"  # Tensorforce's a2c steps with Adam
    out["optimizer" if name == "ppo" else "learning_rate"] = spec
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _update_args(name: str, update: Any) -> dict[str, Any]:
    """``update`` as PPO-style ``update=`` (on-policy) or replay ``batch_size``/frequency/start."""
    if update is None or name in _ON_POLICY:
        return {} if update is None else {"update": update}
    spec = {"batch_size": update} if isinstance(update, int) else dict(update)
    if spec.get("unit", "timesteps") != "timesteps":
        raise ConfigError(message("agent.update.unit", spec["unit"], "'timesteps' for " + name))
    out = {"batch_size": spec["batch_size"]}
    if spec.get("frequency") is not None:
        out["update_frequency"] = spec["frequency"]
    if spec.get("start") is not None:
        out["start_updating"] = spec["start"]
    return out


def _estimation_args(name: str, estimation: Mapping[str, Any]) -> dict[str, Any]:
    """Discount, processing and horizon keys of ``reward_estimation`` as agent arguments."""
    unknown = set(estimation) - set(_ESTIMATION_ARGS) - set(_ESTIMATION_SHAPE)
    unknown -= {"predict_action_values"}
    if unknown:
        raise ConfigError(f"agent.reward_estimation: unsupported keys {sorted(unknown)}")
    out = {key: estimation[key] for key in _ESTIMATION_ARGS if key in estimation}
    if estimation.get("predict_horizon_values") == "late":
        log.warning(
            "agent.reward_estimation.predict_horizon_values='late': the horizon values are "
            "those stored when acting ('early'); they are not recomputed at the update"
        )
    if name in ("a2c", "ac", "dqn", "dpg") and "horizon" in estimation:
        out["horizon"] = estimation["horizon"]
    if name in ("dqn", "dpg"):
        _replay_advantages(name, estimation, out.pop("advantage_processing", None))
    if name == "ppo" and "gae_decay" in estimation:
        out["gae_lambda"] = estimation["gae_decay"]
    return out


def _replay_advantages(name: str, estimation: Mapping[str, Any], processing: Any) -> None:
    """Log what ``estimate_advantage``/``advantage_processing`` mean for ``dqn``/``dpg``.

    DPG's policy loss ``-Q(s, mu(s))`` reads no advantages (in Tensorforce too), so both have
    no effect there. Tensorforce's value objective with ``estimate_advantage=True`` regresses
    Q(s, a) onto the (processed) advantage ``return - V_baseline(s)``; our ``dqn`` regresses
    onto its TD targets and has no separate baseline, so the advantage is not formed.
    """
    if not estimation.get("estimate_advantage") and processing is None:
        return
    if name == "dpg":
        log.info(
            "agent.reward_estimation: estimate_advantage/advantage_processing have no effect "
            "for the deterministic policy gradient (its loss -Q(s, mu(s)) reads no advantages)"
        )
        return
    log.warning(
        "agent.reward_estimation: estimate_advantage=%r, advantage_processing=%r are not "
        "reproduced for objective 'action_value': dqn regresses Q(s, a) onto its (clipped) "
        "n-step TD targets, not onto the advantage return - V_baseline(s); the baseline "
        "network and its objective are not used",
        estimation.get("estimate_advantage"),
        processing,
    )


def _baseline_args(name: str, baseline: Any, optimizer: Any, objective: Any) -> dict[str, Any]:
    """The baseline (critic) spec, its optimizer and objective as the agent's arguments."""
    if _type(optimizer, "optimizer") == "synchronization" and name in _SPEC_AGENTS:
        return _synchronized_baseline(name, baseline, optimizer)
    if _objective_type(objective, "agent.baseline_objective") not in _DEFAULT_BASELINE_OBJECTIVES:
        raise ConfigError(
            message("agent.baseline_objective", objective, "None, 'state_value' or 'action_value'")
        )
    if name == "dqn":  # Tensorforce's baseline is the target copy of the policy
        if not isinstance(optimizer, Mapping):
            return {}
        return {
            key: optimizer[source]
            for source, key in (
                ("update_weight", "target_update_weight"),
                ("sync_frequency", "target_sync_frequency"),
            )
            if source in optimizer
        }
    out: dict[str, Any] = {}
    critic = "critic" if name in ("a2c", "ac", "dpg") else "baseline"
    if baseline is not None:
        out[critic], _ = _network(baseline, "baseline")
    if optimizer is not None:
        out[f"{critic}_optimizer"] = optimizer
    return out


def _synchronized_baseline(name: str, baseline: Any, optimizer: Any) -> dict[str, Any]:
    """A baseline kept a copy of the policy (``synchronization``) as ``baseline_sync``.

    Its objective takes no effect (no gradient steps), and its distributions are the
    policy's heads (only its network is synchronized); both are accepted as Tensorforce's.
    """
    spec = dict(optimizer)
    spec.pop("type", None)
    unknown = set(spec) - {"update_weight", "sync_frequency"}
    if unknown:
        raise ConfigError(
            f"agent.baseline_optimizer: unsupported synchronization keys {sorted(unknown)}"
        )
    if isinstance(baseline, Mapping) and baseline.get("distributions"):
        log.info("agent.baseline.distributions: the synchronized baseline uses the policy's heads")
        baseline = {key: value for key, value in baseline.items() if key != "distributions"}
    out: dict[str, Any] = {"baseline_sync": spec}
    if baseline is not None:
        out["critic" if name in ("a2c", "ac") else "baseline"], _ = _network(baseline, "baseline")
    return out


def tensorforce_agent(
    states: Any = None,
    actions: Any = None,
    update: Any = None,
    optimizer: Any = None,
    objective: Any = None,
    reward_estimation: Any = None,
    policy: Any = "auto",
    baseline: Any = None,
    baseline_optimizer: Any = None,
    baseline_objective: Any = None,
    **kwargs: Any,
) -> Any:
    """Create the agent that Tensorforce's generic component specs describe.

    Args:
        states: State spec.
        actions: Action spec.
        update: ``dict(unit, batch_size, frequency, start)`` or an int (timesteps).
        optimizer: ``dict(type|optimizer='adam'|'natural_gradient', learning_rate, ...)`` or
            any other Tensorforce optimizer spec (``forceexp.core.optimizers``).
        objective: ``'policy_gradient'``, ``'action_value'``, ``'deterministic_policy_gradient'``
            or a dict with that ``type`` (``clipping_value``, ``huber_loss``, ...);
            ``dict(type='value', value='action')`` is ``'action_value'``;
            ``dict(type='plus', objective1='policy_gradient', objective2='action_value')``.
        reward_estimation: ``dict(horizon, discount, estimate_advantage, ...)``.
        policy: A network spec or ``dict(type='parametrized_distributions', network=...)``.
        baseline: The baseline/critic network (or ``parametrized_*`` dict).
        baseline_optimizer: The baseline's optimizer, or ``synchronization`` (DQN's target
            network; ``baseline_sync`` of ``a2c``/``ac``/``vpg``).
        baseline_objective: None, ``'state_value'`` or ``'action_value'`` (or
            ``dict(type='value', value='state'|'action')``).
        **kwargs: Other Tensorforce agent arguments (``memory``, ``exploration``, ``saver``, ...).

    Returns:
        The mapped agent (``ppo``, ``vpg``, ``a2c``, ``ac``, ``trpo``, ``dqn`` or ``dpg``).

    Raises:
        ConfigError: A component without a counterpart, named with its value.
    """
    from forceexp.agents.agent import Agent

    if objective is None:
        raise ConfigError("agent 'tensorforce': objective= is required (e.g. 'policy_gradient')")
    estimation = reward_estimation if reward_estimation is not None else {}
    if not isinstance(estimation, Mapping):
        raise ConfigError(message("agent.reward_estimation", estimation, "a dict"))
    name = _choose(objective, optimizer, estimation)
    network, extra = _network(policy, "policy", actions)
    if name == "dpg" and extra.pop("distributions", None) is not None:
        log.info(
            "agent.policy.distributions: dpg's actor is deterministic (tanh-bounded outputs "
            "plus exploration noise); the DPG objective differentiates Q through the actions' "
            "deterministic values, so the distributions are not used"
        )
    if _type(objective) == "plus":
        objective, extra["action_value_loss"] = _plus(objective), True
    if isinstance(objective, Mapping) and name == "ppo":
        extra["likelihood_ratio_clipping"] = objective["clipping_value"]
    if isinstance(objective, Mapping) and name == "dqn" and "huber_loss" in objective:
        extra["huber_loss"] = objective["huber_loss"]
    arguments = {
        "network": network,
        **extra,
        **_update_args(name, update),
        **_optimizer_args(name, optimizer),
        **_estimation_args(name, estimation),
        **_baseline_args(name, baseline, baseline_optimizer, baseline_objective),
        **kwargs,
    }
    return Agent.create(name, states=states, actions=actions, **arguments)
