"""The continuous agents' shared fast path: critics, targets and actors on ``core/dense.py``.

DDPG, TD3 and SAC take their gradient steps here when every network is a plain auto MLP over
flat float states on the CPU (``fast_unsupported`` says why not otherwise; the agents then use
their autograd path, the reference ``tests/test_continuous_fast.py`` checks this one against).
``FastCritics`` holds what the three share:

- the critic TD step: twin (or single) critics on ``concat(states, actions)``, the importance-
  weighted squared TD error ``scale * sum_i mean(w * (Qi - y)^2)`` (``critic_loss``'s), its
  gradient ``2 * scale * w * (Qi - y) / B`` written into each critic's output gradient, and the
  Adam step of the critic optimizer;
- the bootstrap: ``min_i Qi_target(s', a')`` on the target critics (inference passes);
- the actor's gradient through the critics: ``values`` runs critics on ``(s, pi(s))`` and
  ``action_grad`` back-propagates a given d loss / d Qi to the action input only
  (``backward(input_grad=True, params=False)``), leaving the critics' gradients alone;
- ``DeterministicStacks``: DDPG's and TD3's ``tanh(mlp(s))`` actor and its target copy.

Each agent's own loss gradient (SAC's tanh-Gaussian log-prob, TD3's smoothing and delay) stays
in its file, next to its autograd loss. Targets are synced in place (``sync_targets``), which
the stacks (views of the same parameters) see. Acting runs the actor stack's NumPy pass
(``DenseStack.infer``, ``fast_policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from forceexp.agents.agent import Tensors
from forceexp.core.dense import DenseStack, FastOptimizer, parse_dense
from forceexp.core.networks import AutoNetwork

if TYPE_CHECKING:
    from forceexp.agents.continuous import ContinuousAgent


def _body_reason(body: nn.Module, path: str) -> str | None:
    if type(body) is not AutoNetwork or len(body.encoders):
        return f"{path} is not a plain auto MLP"
    try:
        parse_dense(body.mlp)
    except ValueError as exc:
        return f"{path}: {exc}"
    return None


def fast_unsupported(agent: ContinuousAgent) -> str | None:
    """Why ``agent`` cannot take fast steps, or None when it can."""
    if agent.device.type != "cpu":
        return f"the networks are on {agent.device}"
    if agent._internals:
        return "the actor is recurrent (internals)"
    if any(spec.type != "float" for spec in agent.state_specs.values()):
        return "a state is not float"
    if agent.l2_regularization:
        return "l2_regularization (its actor penalty is on the autograd path)"
    bodies = [("network", agent.actor.network)]
    bodies += [(f"critic[{i}]", c.network) for i, c in enumerate(agent.critics)]
    for path, body in bodies:
        reason = _body_reason(body, path)
        if reason is not None:
            return reason
    return None


def flat_states(states: Tensors, names: Sequence[str]) -> torch.Tensor:
    """States ``{name: (B, *shape)}`` as one contiguous ``(B, D)`` float tensor, in spec order."""
    parts = [states[name].reshape(states[name].shape[0], -1) for name in names]
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).contiguous()


class FastCritics:
    """Critic stacks, target critic stacks and the optimizers of a ``ContinuousAgent``.

    Args:
        agent: The agent, with its actor added (``actor_optimizer`` gets a ``FastOptimizer``
            too, for the agent's actor stacks).
    """

    def __init__(self, agent: ContinuousAgent) -> None:
        self.names = agent.state_specs.names()
        self.optimizer = FastOptimizer(agent.critic_optimizer)
        self.actor_optimizer = FastOptimizer(agent.actor_optimizer)
        self.online = [DenseStack([c.network.mlp, c.output], self.optimizer) for c in agent.critics]
        self.targets = [DenseStack([c.network.mlp, c.output]) for c in agent.critic_targets]
        self.action_size = agent.scaling.size
        self._count = 0  # critics run by the last ``values``

    def states(self, states: Tensors) -> torch.Tensor:
        """Flat ``(B, D)`` states, the actors' input and the first columns of the critics'."""
        return flat_states(states, self.names)

    @staticmethod
    def _inputs(states: torch.Tensor, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        return torch.cat((states, torch.as_tensor(actions)), 1)

    def target_min(self, next_states: torch.Tensor, next_actions: np.ndarray) -> np.ndarray:
        """``min_i Qi_target(s', a')`` ``(B,)`` (a new array)."""
        inputs = self._inputs(next_states, next_actions)
        values = [t.forward(inputs, keep=False).numpy()[:, 0] for t in self.targets]
        return values[0].copy() if len(values) == 1 else np.minimum.reduce(values)

    def step(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        targets: np.ndarray,
        weights: np.ndarray,
        scale: float = 1.0,
    ) -> tuple[float, float, np.ndarray]:
        """One critic step on ``scale * sum_i mean(w * (Qi(s, a) - y)^2)``.

        Returns:
            The loss, the mean Q of the first critic and ``|TD error|`` per row (mean over
            critics), as ``ContinuousAgent.critic_loss`` (times ``scale``).
        """
        inputs = self._inputs(states, actions)
        loss, errors = 0.0, np.zeros(len(targets), np.float32)
        q_mean = 0.0
        for i, critic in enumerate(self.online):
            q = critic.forward(inputs).numpy()[:, 0]
            error = q - targets
            loss += float(np.mean(weights * error * error))
            np.multiply(
                weights * error, 2.0 * scale / len(error), out=critic.grad_out().numpy()[:, 0]
            )
            critic.backward()
            errors += np.abs(error)
            if i == 0:
                q_mean = float(q.mean())
        self.optimizer.step()
        return scale * loss, q_mean, errors / len(self.online)

    def values(self, states: torch.Tensor, actions: np.ndarray, count: int) -> list[np.ndarray]:
        """``Qi(s, a)`` ``(B,)`` of the first ``count`` critics, kept for ``action_grad``."""
        self._count = count
        inputs = self._inputs(states, actions)
        return [critic.forward(inputs).numpy()[:, 0] for critic in self.online[:count]]

    def action_grad(self, grads: Sequence[np.ndarray]) -> np.ndarray:
        """The action gradient ``(B, A)`` from d loss / d Qi ``(B,)`` of the ``values`` critics."""
        total = np.zeros((len(grads[0]), self.action_size), np.float32)
        for critic, grad in zip(self.online[: self._count], grads, strict=True):
            critic.grad_out().numpy()[:, 0] = grad
            inputs = critic.backward(input_grad=True, params=False).numpy()
            total += inputs[:, -self.action_size :]
        return total


class DeterministicStacks:
    """DDPG's and TD3's actor ``tanh(mlp(s))`` and its target copy on dense stacks.

    Args:
        agent: The agent (``actor``, ``actor_target``).
        optimizer: The actor's ``FastOptimizer``.
    """

    def __init__(self, agent: ContinuousAgent, optimizer: FastOptimizer) -> None:
        actor, target = agent.actor, agent.actor_target
        self.online = DenseStack([actor.network.mlp, actor.output], optimizer)
        self.target = DenseStack([target.network.mlp, target.output])
        self.optimizer = optimizer

    def __call__(self, states: torch.Tensor) -> np.ndarray:
        """Unit actions ``(B, A)`` of the actor, kept for ``step``, a new array."""
        self._actions = np.tanh(self.online.forward(states).numpy())
        return self._actions

    def act(self, states: torch.Tensor) -> np.ndarray:
        """Unit actions ``(B, A)`` of the actor from its NumPy pass (acting), a new array."""
        return np.tanh(self.online.infer(states.numpy()))

    def target_actions(self, states: torch.Tensor) -> np.ndarray:
        """Unit actions ``(B, A)`` of the target actor, a new array."""
        return np.tanh(self.target.forward(states, keep=False).numpy())

    def step(self, grad_actions: np.ndarray) -> None:
        """Back-propagate d loss / d actions through tanh and the stack; then Adam."""
        grad = self.online.grad_out().numpy()
        np.multiply(grad_actions, 1.0 - self._actions * self._actions, out=grad)
        self.online.backward()
        self.optimizer.step()
