"""ContinuousAgent: what the actor-critic replay agents share (DDPG, TD3, SAC).

Actions are any dict of bounded float actions, seen by the networks as one vector in
``[-1, 1]`` (``ActionScaling``; the memory stores env-scale actions). The base builds the
critics (``critic=`` spec per critic body, over the states plus the named ``action`` input) and
their target copies, holds the learning-rate schedule, the optional action noise (DDPG, TD3)
and the save/load of every network and optimizer. Each agent file holds its actor, its
defaults and its loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from forceexp import tags
from forceexp.agents.agent import Tensors
from forceexp.agents.continuous_fast import FastCritics, fast_unsupported
from forceexp.agents.off_policy import OffPolicyAgent
from forceexp.config import build_network
from forceexp.core.memory import ReplaySample
from forceexp.core.noise import make_noise
from forceexp.core.schedules import Schedule, parse_schedule
from forceexp.core.targets import Polyak, frozen_copy
from forceexp.core.value_functions import ActionScaling, Critic, critic_specs, internal_shapes
from forceexp.errors import check_number
from forceexp.specs import Specs, parse_specs

#: Default actor and critic bodies (SB3's ``net_arch=[256, 256]``, ReLU, PyTorch's default init).
DEFAULT_NETWORK = {"type": "auto", "size": 256, "depth": 2, "activation": "relu", "init": "torch"}


def critic_network(spec: Any, states: Specs, path: str) -> nn.Module:
    """Build a critic body over ``states`` (the agent's states plus ``action``).

    A plain layer list that does not start with ``retrieve`` gets one that concatenates every
    input first, so the actor's layer list also works for the critic.
    """
    if (
        isinstance(spec, list | tuple)
        and spec
        and isinstance(spec[0], Mapping)
        and spec[0].get("type") != "retrieve"
    ):
        inputs = {"type": "retrieve", "tensors": states.names(), "aggregation": "concat"}
        spec = [inputs, *spec]
    return build_network(spec, states, path, feed_forward=True)


class ContinuousAgent(OffPolicyAgent):
    """Base of DDPG, TD3 and SAC; subclasses pass their constructor arguments through.

    Args:
        num_critics: Independently initialised critics (twin critics: 2).
        critic: Critic body spec (as ``network``; a plain layer list gets the inputs
            concatenated first).
        learning_rate: Adam step size of every optimizer: a number or a schedule spec.
        tau: Polyak coefficient of the target networks.
        exploration: Action noise on the unit scale (``make_noise`` spec), or None.
        schedule_timesteps: Training budget for schedules given as a ``fraction``.
        **arguments: ``OffPolicyAgent`` arguments.
    """

    def __init__(
        self,
        num_critics: int,
        critic: Any,
        learning_rate: Any,
        tau: float,
        exploration: Any = None,
        schedule_timesteps: int | None = None,
        **arguments: Any,
    ) -> None:
        check_number("agent.tau", tau, 0.0, 1.0)
        self.scaling = ActionScaling(parse_specs(arguments["actions"], "action"), self.name)
        self.learning_rate = parse_schedule(
            learning_rate, "agent.learning_rate", schedule_timesteps
        )
        super().__init__(**arguments)
        self.tau = tau
        self.noise = make_noise(
            exploration,
            (self.scaling.size,),
            self.parallel_interactions,
            "agent.exploration",
            self.seed,
        )
        specs = critic_specs(self.state_specs, self.scaling.size)
        self.critics = nn.ModuleList(
            Critic(critic_network(critic, specs, f"critic[{i}]")) for i in range(num_critics)
        ).to(self.device)
        self.critic_targets = frozen_copy(self.critics)
        self.critic_optimizer = self.adam(self.critics)
        #: what ``state_dict`` saves: networks and optimizers by name (subclasses add theirs)
        self.saved: dict[str, nn.Module | torch.optim.Optimizer] = {
            "critics": self.critics,
            "critic_targets": self.critic_targets,
            "critic_optimizer": self.critic_optimizer,
        }
        #: target network name -> its online network (weights-only loads copy these)
        self.targets: dict[str, nn.Module] = {"critic_targets": self.critics}
        self._steps = 0  # gradient steps so far (policy delay, target sync cadence)
        self._polyak: dict[bool, Polyak] = {}
        self._fast: FastCritics | None = None  # set by subclasses through ``fast_critics``

    def shared_arguments(self) -> dict[str, Any]:
        """This agent's constructor arguments that ``ContinuousAgent`` and its bases take.

        ``Agent.__new__`` captured every argument in ``self.spec``; subclasses call
        ``super().__init__(num_critics=..., **self.shared_arguments())``.
        """
        names = set(inspect.signature(OffPolicyAgent.__init__).parameters)
        names |= set(inspect.signature(ContinuousAgent.__init__).parameters)
        return {k: v for k, v in self.spec.items() if k in names - {"self", "num_critics"}}

    def actor_network(self, spec: Any) -> nn.Module:
        """The actor body over the states (``network=`` spec; may be recurrent)."""
        return build_network(spec, self.state_specs, "network")

    def add_actor(self, actor: nn.Module, with_target: bool) -> None:
        """Set ``self.actor`` (on the device), its optimizer and optionally its target copy.

        A recurrent actor's internals are carried per slot and stored with each transition;
        the update steps the actor (and its target) once from them.
        """
        self._carry_internals(internal_shapes(actor))
        self.actor = actor.to(self.device)
        self.actor_optimizer = self.adam(self.actor)
        self.saved.update(actor=self.actor, actor_optimizer=self.actor_optimizer)
        if with_target:
            self.actor_target = frozen_copy(self.actor)
            self.saved["actor_target"] = self.actor_target
            self.targets["actor_target"] = self.actor

    def fast_critics(self, enabled: bool) -> FastCritics | None:
        """The shared fast path (after ``add_actor``) if ``enabled`` and the networks allow it."""
        fast = self._use_fast_path(enabled, lambda: fast_unsupported(self))
        return FastCritics(self) if fast else None

    def acting_modules(self) -> list[nn.Module]:
        """The actor."""
        return [self.actor]

    def parameter_schedules(self) -> dict[str, Schedule]:
        """``learning_rate`` and, with action noise, its scale as ``exploration``."""
        out = {"learning_rate": self.learning_rate}
        if self.noise is not None:
            out["exploration"] = self.noise.scale
        return out

    def sync_targets(self, actor: bool) -> None:
        """Polyak-average the target critics (and the target actor) toward the online ones."""
        if actor not in self._polyak:
            names = [name for name in self.targets if actor or name == "critic_targets"]
            self._polyak[actor] = Polyak([(self.targets[n], self.saved[n]) for n in names])
        self._polyak[actor](self.tau)

    def adam(self, module: nn.Module | list[torch.Tensor]) -> torch.optim.Adam:
        """An Adam optimizer at the current learning rate."""
        params = module.parameters() if isinstance(module, nn.Module) else module
        return torch.optim.Adam(params, lr=self._lr())

    def _lr(self) -> float:
        return self.learning_rate.value(self.timesteps, self.episodes, self.updates)

    # ------------------------------------------------------------------ acting
    def _select(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> dict[str, np.ndarray]:
        """Policy actions, plus action noise unless deterministic, clipped and scaled."""
        if self._fast is not None:  # the stacks' inference passes (~4x cheaper for one state)
            unit = self.fast_policy(self._fast.states(states), deterministic)
        else:
            with torch.inference_mode():
                unit = self.policy(states, deterministic).cpu().numpy()
        if self.noise is not None and not deterministic:
            unit = unit + self.noise.sample(slots, self.timesteps, self.episodes, self.updates)
        return self.scaling.to_env(unit)

    def _select_recurrent(
        self,
        states: Tensors,
        masks: Tensors,
        internals: Tensors,
        deterministic: bool,
        slots: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], Tensors]:
        """As ``_select`` from a recurrent actor's internals; also the next internals."""
        with torch.inference_mode():
            unit, following = self.actor.act(states, internals, deterministic, self._generator)
        unit = unit.cpu().numpy()
        if self.noise is not None and not deterministic:
            unit = unit + self.noise.sample(slots, self.timesteps, self.episodes, self.updates)
        return self.scaling.to_env(unit), following

    def policy(self, states: Tensors, deterministic: bool) -> torch.Tensor:
        """Unit actions ``(B, A)`` of the policy for batched states."""
        raise NotImplementedError

    def fast_policy(self, states: torch.Tensor, deterministic: bool) -> np.ndarray:
        """``policy`` on the fast path, for flat states ``(B, D)``."""
        raise NotImplementedError

    def _episodes_ended(self, slots: np.ndarray) -> None:
        super()._episodes_ended(slots)
        if self.noise is not None:
            self.noise.reset(slots)

    # ------------------------------------------------------------------ learning
    def _phase_start(self) -> dict[str, float]:
        lr = self._lr()
        for item in self.saved.values():
            if isinstance(item, torch.optim.Optimizer):
                for group in item.param_groups:
                    group["lr"] = lr
        metrics = {tags.LEARNING_RATE: lr}
        if self.noise is not None:
            scale = self.noise.current_scale(self.timesteps, self.episodes, self.updates)
            metrics[tags.EXPLORATION] = scale
        return metrics

    def critic_loss(
        self, batch: ReplaySample, actions: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sum over critics of the (importance-weighted) mean squared TD error.

        Returns the loss, the mean Q of the first critic and ``|TD error|`` per row (mean over
        critics, for prioritized replay).
        """
        q = torch.stack([critic(batch.states, actions) for critic in self.critics])  # (C, B)
        errors = q - targets
        loss = (batch.weights * errors.pow(2)).mean(1).sum()
        return loss, q[0].detach().mean(), errors.detach().abs().mean(0)

    def _imitation_step(self, states: Tensors, masks: Tensors, actions: Tensors) -> torch.Tensor:
        """Behaviour cloning: the deterministic unit action regressed onto the recorded one."""
        loss = (self.policy(states, True) - self.scaling.to_unit(actions)).pow(2).mean()
        self.minimize(self.actor_optimizer, loss)
        return loss.detach()

    @staticmethod
    def minimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Networks, targets, optimizers (``self.saved``), generator, phase and step counts."""
        state = super().state_dict()
        state.update({name: item.state_dict() for name, item in self.saved.items()})
        state["steps"] = torch.tensor(self._steps)
        if self.noise is not None:
            state["noise"] = self.noise.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what ``state_dict`` wrote; a weights-only file without targets copies them."""
        for name, item in self.saved.items():
            if name in state:
                item.load_state_dict(state[name])
        for name, online in self.targets.items():
            if name not in state:
                self.saved[name].load_state_dict(online.state_dict())
        if "steps" in state:
            self._steps = int(state["steps"])
        if self.noise is not None and "noise" in state:
            self.noise.load_state_dict(state["noise"])
        super().load_state_dict(state)
