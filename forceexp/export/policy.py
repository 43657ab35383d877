"""DeterministicPolicy: an agent's deterministic action from raw states, as one torch module.

What ``agent.act(states, independent=True, deterministic=True)`` computes, without the agent:
state normalisation (PPO's running statistics, frozen), the network, the greedy / mean action
and its mapping to the environment's scale. Inputs are positional tensors, one per state (in
spec order), then one boolean mask per int action (``(B, *shape, num_values)``; all True for no
masking); outputs are one tensor per action. The ONNX and TorchScript writers trace this module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.distributions import BernoulliHead, BetaHead, CategoricalHead, GaussianHead
from forceexp.core.value_functions import masked_values
from forceexp.errors import ConfigError
from forceexp.specs import Specs

_BETA_EPS = 1e-6
_TORCH_DTYPES = {"float": torch.float32, "int": torch.int64, "bool": torch.bool}


def _names(specs: Specs, kind: str) -> list[str]:
    """Input/output names as ``act`` uses them: ``'state'``/``'action'`` for an unnamed spec."""
    return [kind] if specs.single else specs.names()


def refuse(agent: Any, format: str, reason: str) -> ConfigError:
    """The error for an agent or network that ``format`` cannot export."""
    return ConfigError(
        f"save(format={format!r}): cannot export agent {agent.name!r}: {reason}. "
        "Save it with format='checkpoint' and act through forceexp instead"
    )


class DeterministicPolicy(nn.Module):
    """An agent's deterministic acting as ``forward(*states, *masks) -> tuple(actions)``.

    Args:
        agent: A ``ppo``, ``dqn`` family, ``sac``, ``td3`` or ``dpg`` agent (on any device; the
            module is built on the CPU from copies of its networks).
        format: The export format, named in errors.

    Raises:
        ConfigError: The agent (or its recurrent network) cannot be exported.
    """

    def __init__(self, agent: Any, format: str) -> None:
        super().__init__()
        import copy

        self.state_names = agent.state_specs.names()
        self.input_names = _names(agent.state_specs, "state")
        self.mask_actions = [n for n, s in agent.action_specs.items if s.type == "int"]
        self.output_names = _names(agent.action_specs, "action")
        self.action_names = agent.action_specs.names()
        self.state_specs, self.action_specs = agent.state_specs, agent.action_specs
        if agent.action_specs.single:
            self.mask_names = ["action_mask"] if self.mask_actions else []
        else:
            self.mask_names = [f"{n}_mask" for n in self.mask_actions]
        self.kind = _kind(agent, format)
        module = {"ppo": "policy", "q": "q", "actor": "actor"}[self.kind]
        self.body = copy.deepcopy(getattr(agent, module)).cpu().eval()
        for p in self.body.parameters():
            p.requires_grad_(False)
        if self.kind == "actor":
            scaling = agent.scaling
            self.register_buffer("low", torch.as_tensor(scaling.low))
            self.register_buffer("high", torch.as_tensor(scaling.high))
            self.sizes, self.shapes = list(scaling.sizes), list(scaling.shapes)

    def example_inputs(self, size: int = 2) -> tuple[torch.Tensor, ...]:
        """Zero states and all-True masks for ``size`` rows (to trace with)."""
        states = tuple(
            torch.zeros((size, *spec.shape), dtype=_torch_dtype(spec.type))
            for spec in self.state_specs.values()
        )
        masks = tuple(
            torch.ones(
                (size, *self.action_specs[n].shape, int(self.action_specs[n].num_values)),
                dtype=torch.bool,
            )
            for n in self.mask_actions
        )
        return states + masks

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Env-scale actions, one tensor per action (spec order), for raw states and masks."""
        count = len(self.state_names)
        states = dict(zip(self.state_names, inputs[:count], strict=True))
        masks = dict(zip(self.mask_actions, inputs[count:], strict=True))
        if self.kind == "ppo":
            actions = self._ppo(states, masks)
        elif self.kind == "q":
            q = self.body(states)
            actions = {n: masked_values(x, masks.get(n)).argmax(-1) for n, x in q.items()}
            actions = {  # a bool action's Q values are those of False and True
                n: a.bool() if self.action_specs[n].type == "bool" else a
                for n, a in actions.items()
            }
        else:
            actions = self._actor(states)
        return tuple(actions[n] for n in self.action_names)

    def _ppo(self, states: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict:
        policy = self.body
        features = policy.network(policy.normalize(states, update=False))
        out = {}
        for name, head in policy.heads.items():
            out[name] = _head_action(head, policy.head_input(name, features), masks.get(name))
        return out

    def _actor(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        body = self.body
        if hasattr(body, "mean"):  # SAC's GaussianActor: tanh of the mean
            unit = torch.tanh(body.mean(body.network(states)))
        else:
            unit = body(states)
        scaled = self.low + (unit.clamp(-1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
        parts = torch.split(scaled, self.sizes, dim=1)
        return {
            name: part.reshape(-1, *shape)
            for name, part, shape in zip(self.action_names, parts, self.shapes, strict=True)
        }


def _head_action(head: nn.Module, features: torch.Tensor, mask: torch.Tensor | None) -> Any:
    """The deterministic env-scale action of one PPO head."""
    if isinstance(head, CategoricalHead):
        logits = head.linear(features).view(-1, *head.shape, head.num_values)
        return masked_values(logits, mask).argmax(-1)
    if isinstance(head, GaussianHead):
        return head.to_env(head.linear(features).view(-1, *head.shape))
    if isinstance(head, BetaHead):
        params = nn.functional.softplus(head.linear(features)) + 1.0
        alpha, beta = params.view(-1, 2, *head.shape).unbind(1)
        return head.to_env((alpha / (alpha + beta)).clamp(_BETA_EPS, 1.0 - _BETA_EPS))
    if isinstance(head, BernoulliHead):
        return head.linear(features).view(-1, *head.shape) > 0
    raise AssertionError(f"unknown head {type(head).__name__}")


def _kind(agent: Any, format: str) -> str:
    """``'ppo'``, ``'q'`` or ``'actor'``: which of the agent's modules acts."""
    if getattr(agent, "policy", None) is not None and hasattr(agent.policy, "heads"):
        if agent.policy.recurrent:
            raise refuse(agent, format, "its policy network is recurrent (internals)")
        return "ppo"
    if hasattr(agent, "q") and hasattr(agent, "target"):
        if agent.q.internal_shapes:
            raise refuse(agent, format, "its Q network is recurrent (internals)")
        return "q"
    if hasattr(agent, "actor") and hasattr(agent, "scaling"):
        if agent._internals:
            raise refuse(agent, format, "its actor network is recurrent (internals)")
        return "actor"
    raise refuse(agent, format, "only ppo, dqn/double_dqn/dueling_dqn, sac, td3 and dpg export")


def _torch_dtype(kind: str) -> torch.dtype:
    return _TORCH_DTYPES[kind]
