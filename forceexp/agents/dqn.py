"""DQN and its double / dueling variants: epsilon-greedy Q-learning from replay with a target net.

The update, per sampled batch (Mnih et al. 2015; van Hasselt et al. 2016 for double Q):

    target = r + discount**k * max_a' Q_target(s', a')            (masked values excluded)
    double:  a* = argmax_a' Q(s', a'),  target = r + discount**k * Q_target(s', a*)
    loss   = mean(weight * huber(Q(s, a) - target))
    (target clipped to ``return_clipping`` when set: Tensorforce's return processing)

``discount**k`` is 0 where the episode terminated (see ``ReplayMemory``); the target network
is synced every ``target_update_interval`` timesteps (``tau = 1``: a copy; ``tau < 1``:
Polyak averaging).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from forceexp import tags
from forceexp.agents.agent import Tensors
from forceexp.agents.off_policy import OffPolicyAgent
from forceexp.config import build_network
from forceexp.core.dense import DenseStack, FastOptimizer, parse_dense
from forceexp.core.exploration import epsilon_greedy, uniform_actions
from forceexp.core.memory import ReplaySample
from forceexp.core.networks import AutoNetwork
from forceexp.core.parameters import bounded
from forceexp.core.schedules import Schedule, parse_schedule
from forceexp.core.targets import Polyak, frozen_copy
from forceexp.core.value_functions import QFunction, masked_values
from forceexp.errors import ConfigError, check_int, check_number, message

LOSSES = ("huber", "mse")
#: SB3's DQN network: ``net_arch=[64, 64]``, ReLU, PyTorch's default init.
DEFAULT_NETWORK = {"type": "auto", "size": 64, "depth": 2, "activation": "relu", "init": "torch"}


class DQNAgent(OffPolicyAgent):
    """Deep Q-Network for int and bool actions (any number, any shape; one Q value per value).

    A bool action has two Q values, those of False and True.

    Defaults are Stable-Baselines3's; ``conf/tuning/dqn_<env>.yaml`` holds the RL-Zoo settings.

    Args:
        states: State spec.
        actions: Action spec (int and bool actions; a bool has the Q values of False, True).
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        network: Q-network body spec (``'auto'``, a layer list, a dict, a module).
        memory: Replay capacity or dict (see ``OffPolicyAgent``).
        batch_size: Transitions per gradient step.
        learning_rate: Adam step size (a number or a schedule spec, see ``docs/schedules.md``).
        learning_starts: Timesteps of random actions before training.
        train_freq: Timesteps between training phases, or ``[n, 'episode']`` (every ``n``
            ended episodes, SB3's ``train_freq=(n, "episode")``).
        gradient_steps: Gradient steps per phase (-1: as many as timesteps collected).
        discount: Discount factor gamma.
        n_step: Steps per TD target.
        target_update_interval: Timesteps between target-network syncs.
        tau: Sync coefficient (1: copy; < 1: Polyak averaging).
        exploration: Epsilon of epsilon-greedy acting: a number or a schedule spec with values
            in [0, 1] (a random process is clipped to it).
        double_q: Double Q-learning targets.
        dueling: Dueling value/advantage heads.
        loss: ``'huber'`` (smooth L1) or ``'mse'``.
        max_grad_norm: Global gradient-norm clipping (None: off).
        fast_update: Take TD steps on the shared fast path (``forceexp.core.dense``) when the
            Q network is a plain MLP over flat float states with one scalar int action on the
            CPU (not dueling); the same maths as autograd, which every other case uses.
        schedule_timesteps: Training budget for schedules given as a ``fraction``.
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'``, an int, or None.
        normalize_rewards: Scale sampled rewards by the running std of the discounted return
            (``OffPolicyAgent``; SB3 ``VecNormalize(norm_reward=True)``).
        reward_scale: Factor on every sampled reward.
        reward_clip: Clip sampled rewards to ``[-reward_clip, reward_clip]`` or ``[lower, upper]``
            (None: off).
        return_clipping: ``(lower, upper)`` to clip the TD targets to (Tensorforce's
            ``return_processing`` clipping; None: off).
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
        l2_regularization: L2 penalty weight on the Q network's weight matrices (0: off;
            Tensorforce's; the TD steps then take the autograd path).
        variable_noise: Std of Gaussian noise on the Q network's parameters for each
            non-deterministic act (0: off; Tensorforce's).
    """

    name = "dqn"
    step_metrics = (tags.LOSS_Q, tags.Q_VALUE, tags.TD_ERROR, tags.UPDATE_NORM)

    def __init__(
        self,
        states: Any = None,
        actions: Any = None,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        network: Any = DEFAULT_NETWORK,
        memory: Any = 1_000_000,
        batch_size: int = 32,
        learning_rate: Any = 1e-4,
        learning_starts: int = 100,
        train_freq: int | Sequence[Any] = 4,
        gradient_steps: int = 1,
        discount: float = 0.99,
        n_step: int = 1,
        target_update_interval: int = 10_000,
        tau: float = 1.0,
        exploration: Any = None,
        double_q: bool = False,
        dueling: bool = False,
        loss: Literal["huber", "mse"] = "huber",
        max_grad_norm: float | None = 10.0,
        fast_update: bool = True,
        schedule_timesteps: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | tuple[float, float] | None = None,
        state_preprocessing: Any = None,
        reward_processing: Any = None,
        l2_regularization: float = 0.0,
        variable_noise: float = 0.0,
        return_clipping: tuple[float, float] | None = None,
    ) -> None:
        check_int("agent.target_update_interval", target_update_interval, 1)
        check_number("agent.tau", tau, 0.0, 1.0)
        if loss not in LOSSES:
            raise ConfigError(message("agent.loss", loss, f"one of {LOSSES}"))
        if exploration is None:  # SB3: 1.0 -> 0.05 over the first 10% of training
            exploration = _default_exploration(schedule_timesteps)
        epsilon = parse_schedule(exploration, "agent.exploration", schedule_timesteps)
        self.exploration = bounded(
            epsilon, exploration, "agent.exploration", 0.0, 1.0, "probabilities in [0, 1]"
        )
        self.learning_rate = parse_schedule(
            learning_rate, "agent.learning_rate", schedule_timesteps
        )
        super().__init__(
            states,
            actions,
            max_episode_timesteps,
            parallel_interactions,
            memory,
            batch_size,
            learning_starts,
            train_freq,
            gradient_steps,
            discount,
            n_step,
            seed,
            device,
            saver,
            summarizer,
            recorder,
            torch_threads,
            normalize_rewards,
            reward_scale,
            reward_clip,
            state_preprocessing,
            reward_processing,
            l2_regularization,
            variable_noise,
            return_clipping,
        )
        self.target_update_interval, self.tau = target_update_interval, tau
        self.double_q, self.dueling, self.loss = double_q, dueling, loss
        self.max_grad_norm = max_grad_norm
        body = build_network(network, self.state_specs, "network")
        self.q = QFunction(body, self.action_specs, dueling).to(self.device)
        #: bool actions: Q values of False and True; the greedy index is the action
        self._bools = {name for name, spec in self.action_specs.items if spec.type == "bool"}
        self.target = frozen_copy(self.q)
        self._sync_target = Polyak([(self.q, self.target)])
        self._carry_internals(self.q.internal_shapes)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self._lr())
        self._syncs = 0  # target syncs so far (timesteps // target_update_interval)
        fast = self._use_fast_path(fast_update, lambda: fast_unsupported(self))
        self._fast = FastTD(self) if fast else None

    def _lr(self) -> float:
        return self.learning_rate.value(self.timesteps, self.episodes, self.updates)

    def acting_modules(self) -> list[nn.Module]:
        """The Q network."""
        return [self.q]

    def parameter_schedules(self) -> dict[str, Schedule]:
        """``learning_rate`` and ``exploration`` (epsilon)."""
        return {"learning_rate": self.learning_rate, "exploration": self.exploration}

    def state_dict(self) -> dict[str, Any]:
        """Q network, target network and optimizer state (the memory only on request)."""
        return {
            **super().state_dict(),
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "syncs": torch.tensor(self._syncs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what ``state_dict`` wrote (weights-only files carry just the networks)."""
        if "q" in state:
            self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state.get("target", self.q.state_dict()))
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "syncs" in state:
            self._syncs = int(state["syncs"])
        super().load_state_dict(state)

    # ------------------------------------------------------------------ acting
    def _select(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        """Greedy actions over allowed values; epsilon-greedy unless deterministic."""
        if self._fast is not None:
            epsilon = None if deterministic else self._epsilon()
            return self._fast.act(states, masks, epsilon)
        with torch.inference_mode():
            q = self.q(states)
        return self._choose(q, masks, deterministic)

    def _select_recurrent(
        self,
        states: Tensors,
        masks: Tensors,
        internals: Tensors,
        deterministic: bool,
        slots: np.ndarray,
    ) -> tuple[Tensors, Tensors]:
        """As ``_select`` from the recurrent Q network's internals; also the next internals."""
        with torch.inference_mode():
            q, following = self.q.step(states, internals)
        return self._choose(q, masks, deterministic), following

    def _choose(self, q: Tensors, masks: Tensors, deterministic: bool) -> Tensors:
        """Greedy actions of Q values over allowed values; epsilon-greedy unless deterministic."""
        greedy = {name: masked_values(x, masks.get(name)).argmax(-1) for name, x in q.items()}
        greedy = {name: a.bool() if name in self._bools else a for name, a in greedy.items()}
        if deterministic:
            return greedy
        size = next(iter(greedy.values())).shape[0]
        random = uniform_actions(self.action_specs, masks, size, self._generator, self.device)
        return epsilon_greedy(greedy, random, self._epsilon(), self._generator)

    def _epsilon(self) -> float:
        return self.exploration.value(self.timesteps, self.episodes, self.updates)

    # ------------------------------------------------------------------ learning
    def _observe(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Tensors | None,
        next_masks: Tensors | None = None,
    ) -> dict[str, float] | None:
        syncs = self.timesteps // self.target_update_interval
        if syncs > self._syncs:  # counted in timesteps, before training (as SB3 does)
            self._syncs = syncs
            self._sync_target(self.tau)
        return super()._observe(slots, rewards, terminals, next_states, next_masks)

    def _phase_start(self) -> dict[str, float]:
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return {tags.LEARNING_RATE: lr, tags.EXPLORATION: self._epsilon()}

    def td_targets(self, batch: ReplaySample) -> Tensors:
        """TD targets ``{action: (B, *shape)}`` of a batch (no gradient)."""
        with torch.no_grad():
            next_q = self.target(batch.next_states, batch.next_internals)
            online = self.q(batch.next_states, batch.next_internals) if self.double_q else None
            targets = {}
            for name, values in next_q.items():
                mask = batch.next_masks.get(name)
                if online is None:
                    following = masked_values(values, mask).amax(-1)
                else:
                    best = masked_values(online[name], mask).argmax(-1, keepdim=True)
                    following = values.gather(-1, best).squeeze(-1)
                shape = (-1, *([1] * (following.dim() - 1)))
                targets[name] = self.td_target(
                    batch.rewards.view(shape), batch.discounts.view(shape), following
                )
            return targets

    def _imitation_step(self, states: Tensors, masks: Tensors, actions: Tensors) -> torch.Tensor:
        """Behaviour cloning: cross-entropy of softmax(Q) over allowed values to the actions."""
        q = self.q(states)
        loss = sum(
            nn.functional.cross_entropy(
                masked_values(values, masks.get(name)).reshape(-1, values.shape[-1]),
                actions[name].reshape(-1).long(),
            )
            for name, values in q.items()
        )
        self._step(loss)
        return loss.detach()

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, gradient clipping and an optimizer step; returns the unclipped norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        norm = nn.utils.clip_grad_norm_(self.q.parameters(), max_norm)
        self.optimizer.step()
        return norm

    def _prepare_phase(self, phase: ReplaySample | None) -> None:
        if self._fast is not None:
            self._fast.prepare(phase)

    def _gradient_step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """One TD step on a batch; stats in ``step_metrics`` order and ``|TD error|`` per row."""
        if self._fast is not None:
            return self._fast.step(batch)
        targets = self.td_targets(batch)
        q = self.q(batch.states, batch.internals)
        losses, errors, taken_sum = [], [], 0.0
        for name, values in q.items():
            taken = values.gather(-1, batch.actions[name].long().unsqueeze(-1)).squeeze(-1)
            error = (taken - targets[name]).reshape(taken.shape[0], -1)
            if self.loss == "huber":
                element = nn.functional.smooth_l1_loss(
                    error, torch.zeros_like(error), reduction="none"
                )
            else:
                element = error.pow(2)
            losses.append(element.mean(1))
            errors.append(error.abs().mean(1))
            taken_sum = taken_sum + taken.detach().mean()
        per_row = torch.stack(losses).mean(0)
        loss = (batch.weights * per_row).mean() + self.l2_term()
        norm = self._step(loss)
        td = torch.stack(errors).mean(0).detach()
        stats = torch.stack((loss.detach(), taken_sum / len(q), td.mean(), norm))
        return stats, td


def fast_unsupported(agent: DQNAgent) -> str | None:
    """Why ``agent`` cannot take fast TD steps, or None when it can."""
    body = agent.q.network
    if agent.q.internal_shapes:
        return "the Q network is recurrent (internals)"
    if agent.device.type != "cpu":
        return f"the Q network is on {agent.device}"
    if agent.dueling:
        return "dueling heads"
    if agent.l2_regularization:
        return "l2_regularization (its penalty is on the autograd path)"
    if type(body) is not AutoNetwork or len(body.encoders):
        return "the Q network is not a plain auto MLP"
    if any(spec.type != "float" for spec in agent.state_specs.values()):
        return "a state is not float"
    if len(agent.action_specs) != 1 or agent.action_specs.values()[0].shape != ():
        return "not one scalar action"
    if agent.action_specs.values()[0].type != "int":
        return "a bool action"
    try:
        parse_dense([body.mlp, next(iter(agent.q.heads.values()))])
    except ValueError as exc:
        return str(exc)
    return None


class FastTD:
    """DQN's TD step on the shared ``DenseStack``/``FastOptimizer``: only the loss is here.

    Same maths as ``DQNAgent._gradient_step``'s autograd path (``tests/test_dqn.py`` checks):
    the gradient of ``mean(weight * loss(td))`` w.r.t. the gathered Q values is
    ``weight * loss'(td) / B``, zero elsewhere.
    """

    def __init__(self, agent: DQNAgent) -> None:
        self.agent = agent
        head = next(iter(agent.q.heads.values()))
        target_head = next(iter(agent.target.heads.values()))
        self.optimizer = FastOptimizer(agent.optimizer)
        self.online = DenseStack([agent.q.network.mlp, head], self.optimizer)
        self.target = DenseStack([agent.target.network.mlp, target_head])
        self.names = agent.state_specs.names()
        self.action = agent.action_specs.names()[0]
        self._following: np.ndarray | None = None  # a phase's bootstrap values, in row order
        self._cursor = 0

    def prepare(self, phase: ReplaySample | None) -> None:
        """Bootstrap values of a whole phase's sample in one target pass (None: per step).

        The target network only changes between phases (syncs count timesteps), so one pass
        over all the phase's next states gives exactly the values per-batch passes would
        (the products are row-independent); double Q picks its arguments with the online
        network, which changes every step, and stays per step.
        """
        self._cursor = 0
        self._following = None
        if phase is not None and not self.agent.double_q:
            q_next = self.target.forward(self._flat(phase.next_states), keep=False)
            self._following = self._bootstrap(q_next.numpy(), phase)

    def _bootstrap(self, q_next: np.ndarray, batch: ReplaySample) -> np.ndarray:
        """The max over the allowed actions of the target's Q values ``(B, n)`` (not double Q)."""
        mask = batch.next_masks.get(self.action)
        return (q_next if mask is None else np.where(mask.numpy(), q_next, -np.inf)).max(1)

    def _flat(self, states: Tensors) -> torch.Tensor:
        parts = [states[name].reshape(states[name].shape[0], -1) for name in self.names]
        return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).contiguous()

    def act(self, states: Tensors, masks: Tensors, epsilon: float | None) -> dict[str, np.ndarray]:
        """Greedy (``epsilon`` None) or epsilon-greedy actions from the stack's inference pass.

        The random draws are the autograd path's (``uniform_actions``, then
        ``epsilon_greedy``), from the agent's generator in the same order.
        """
        q = self.online.infer(self._flat(states).numpy())
        mask = masks.get(self.action)
        mask = None if mask is None else mask.numpy()
        greedy = (q if mask is None else np.where(mask, q, -np.inf)).argmax(1)
        if epsilon is None:
            return {self.action: greedy}
        generator = self.agent._generator
        noise = torch.rand(q.shape, generator=generator).numpy()
        random = (noise if mask is None else np.where(mask, noise, -1.0)).argmax(1)
        if epsilon <= 0.0:
            return {self.action: greedy}
        explore = torch.rand(len(greedy), generator=generator).numpy() < epsilon
        return {self.action: np.where(explore, random, greedy)}

    def step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns stats in ``DQNAgent.step_metrics`` order and ``|TD error|``."""
        agent, name = self.agent, self.action
        q = self.online.forward(self._flat(batch.states)).numpy()
        if self._following is not None:  # computed for the phase by prepare()
            following = self._following[self._cursor : self._cursor + len(q)]
            self._cursor += len(q)
        elif agent.double_q:
            next_states = self._flat(batch.next_states)
            q_next = self.target.forward(next_states, keep=False).numpy()
            online = self.online.forward(next_states, keep=False).numpy()
            mask = batch.next_masks.get(name)
            best = np.where(mask.numpy(), online, -np.inf) if mask is not None else online
            following = np.take_along_axis(q_next, best.argmax(1)[:, None], 1)[:, 0]
        else:
            q_next = self.target.forward(self._flat(batch.next_states), keep=False).numpy()
            following = self._bootstrap(q_next, batch)
        rows = np.arange(len(following))
        actions = batch.actions[name].numpy()
        taken = q[rows, actions]
        td = taken - agent.td_target(batch.rewards.numpy(), batch.discounts.numpy(), following)
        weights = batch.weights.numpy()
        if agent.loss == "huber":  # slope clip(td, -1, 1); loss 0.5 td^2 inside, |td| - 0.5 out
            slope = np.minimum(np.maximum(td, -1.0), 1.0)
            loss = slope * (td - 0.5 * slope)
        else:
            loss, slope = td * td, 2.0 * td
        grad = self.online.grad_out().numpy()
        grad.fill(0.0)
        size = len(td)
        grad[rows, actions] = weights * slope / size
        self.online.backward()
        norm, _ = self.optimizer.clip_grad_norm(agent.max_grad_norm)
        self.optimizer.step()
        error = np.abs(td)
        stats = [np.dot(weights, loss) / size, taken.sum() / size, error.sum() / size, norm]
        return torch.from_numpy(np.array(stats, np.float32)), torch.from_numpy(error)


def _default_exploration(horizon: int | None) -> Any:
    """SB3's epsilon: 1 to 0.05 linearly over 10% of the budget (10k steps if unknown)."""
    if horizon is not None:
        return {"type": "linear", "fraction": 0.1, "initial_value": 1.0, "final_value": 0.05}
    return {"type": "linear", "num_steps": 10_000, "initial_value": 1.0, "final_value": 0.05}


class DoubleDQNAgent(DQNAgent):
    """DQN with double Q-learning targets (Tensorforce's ``double_dqn``)."""

    name = "double_dqn"

    def __init__(self, *, double_q: bool = True, **kwargs: Any) -> None:
        super().__init__(double_q=double_q, **kwargs)


class DuelingDQNAgent(DQNAgent):
    """DQN with dueling value/advantage heads (Tensorforce's ``dueling_dqn``)."""

    name = "dueling_dqn"

    def __init__(self, *, dueling: bool = True, **kwargs: Any) -> None:
        super().__init__(dueling=dueling, **kwargs)
