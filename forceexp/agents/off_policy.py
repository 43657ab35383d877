"""OffPolicyAgent: what every replay-based agent shares (DQN, DDPG, TD3, SAC).

Acting stores each slot's states, masks and actions; observing turns them into transitions in
a ``ReplayMemory`` (with the next states the runner passes, or, without them, the states of the
slot's next act); every ``train_freq`` timesteps (or ended episodes) past ``learning_starts``
the subclass's ``_train(steps)`` runs gradient steps on sampled batches. Before
``learning_starts`` actions are uniformly random (mask-aware), as in Stable-Baselines3.
Subclasses hold only their networks, their action selection and their loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from forceexp import tags
from forceexp.agents.agent import Agent, Tensors
from forceexp.agents.experience import EXPERIENCE, trace_internals
from forceexp.core.dense import denormals_flushed
from forceexp.core.exploration import uniform_actions
from forceexp.core.memory import ReplayMemory, ReplaySample
from forceexp.core.normalization import reward_normalizer
from forceexp.core.regularizers import check_regularizers, l2_penalty, perturbed, weight_matrices
from forceexp.errors import ConfigError, check_bounds, check_int, check_number, message
from forceexp.observers.recorder import Trace

#: Tensorforce memory ``type`` names and the sampling they mean.
MEMORY_TYPES = {"replay": "uniform", "recent": "recent", "prioritized": "prioritized"}


def parse_train_freq(train_freq: Any) -> tuple[int, str]:
    """``(n, unit)`` from ``train_freq``: an int (timesteps) or ``[n, 'step' | 'episode']``."""
    if isinstance(train_freq, Sequence) and not isinstance(train_freq, str):
        if len(train_freq) == 2 and train_freq[1] in ("step", "episode"):
            check_int("agent.train_freq[0]", train_freq[0], 1)
            return int(train_freq[0]), str(train_freq[1])
        raise ConfigError(
            message("agent.train_freq", train_freq, "an int or [n, 'step' | 'episode']")
        )
    check_int("agent.train_freq", train_freq, 1)
    return int(train_freq), "step"


def memory_options(memory: Any) -> dict[str, Any]:
    """``ReplayMemory`` keyword arguments from ``memory=<capacity>`` or a dict.

    The dict takes ``capacity`` and the memory's options (``sampling``, ``alpha``, ``beta``, ...);
    Tensorforce's ``type='replay'|'recent'`` selects the sampling.
    """
    if isinstance(memory, int) and not isinstance(memory, bool):
        return {"capacity": memory}
    if not isinstance(memory, Mapping):
        raise ConfigError(message("agent.memory", memory, "a capacity (int) or a dict"))
    options = dict(memory)
    kind = options.pop("type", None)
    if kind is not None:
        if kind not in MEMORY_TYPES:
            raise ConfigError(message("agent.memory.type", kind, f"one of {sorted(MEMORY_TYPES)}"))
        options.setdefault("sampling", MEMORY_TYPES[kind])
    if "capacity" not in options:
        raise ConfigError(message("agent.memory", memory, "a dict with a 'capacity'"))
    return options


#: most transitions a training phase draws at once (more: drawn in chunks of this many rows)
PHASE_ROWS = 65_536


class OffPolicyAgent(Agent):
    """Base of replay-based agents: transitions, warm-up, training cadence.

    Args:
        states: State spec.
        actions: Action spec.
        max_episode_timesteps: Episode length limit (informational).
        parallel_interactions: Number of parallel slots.
        memory: Replay capacity in transitions, or a dict (``capacity``, ``sampling``:
            ``uniform | recent | prioritized``, ``alpha``, ``beta``; Tensorforce's
            ``type='replay'`` is accepted).
        batch_size: Transitions per gradient step.
        learning_starts: Timesteps of uniformly random actions before training starts.
        train_freq: Timesteps (summed over slots) between training phases, or
            ``[n, 'step' | 'episode']`` (SB3's ``TrainFreq``): with ``'episode'`` a phase runs
            once ``n`` episodes have ended (summed over slots).
        gradient_steps: Gradient steps per training phase; -1: as many as timesteps since the
            last phase.
        discount: Discount factor gamma.
        n_step: Steps per return (n-step TD targets; 1 is one-step).
        normalize_rewards: Scale sampled rewards by the running std of the discounted return.
            The memory keeps raw rewards; each sampled batch is scaled with the current
            statistics (SB3's replay buffer with ``VecNormalize``); an n-step transition's
            discounted reward sum is scaled (and clipped) as one reward.
        reward_scale: Factor on every sampled reward (after normalization).
        reward_clip: Clip sampled rewards to ``[-reward_clip, reward_clip]`` or ``[lower, upper]``
            (None: off).
        return_clipping: ``(lower, upper)`` to clip every TD target to (``td_target``;
            Tensorforce's ``return_processing=dict(type='clipping')``; None: off).
        state_preprocessing: Layers run on states before the networks (``Agent``).
        reward_processing: Layers run on observed rewards before learning (``Agent``).
        l2_regularization: Weight of ``l2 / 2 * sum(w ** 2)`` over the acting network's weight
            matrices (Q network, actor), added to its loss (Tensorforce's; 0: off).
        variable_noise: Std of Gaussian noise added to the acting network's parameters for
            each non-deterministic act, removed right after it (Tensorforce's; 0: off).
        seed: Random seed.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Checkpoint spec.
        summarizer: Summary spec.
        recorder: Trace recording spec.
        torch_threads: ``'auto'``, an int, or None.
    """

    normalizes_sampled_rewards = True

    def __init__(
        self,
        states: Any,
        actions: Any,
        max_episode_timesteps: int | None,
        parallel_interactions: int,
        memory: Any,
        batch_size: int,
        learning_starts: int,
        train_freq: int | Sequence[Any],
        gradient_steps: int,
        discount: float,
        n_step: int,
        seed: int | None,
        device: str,
        saver: Any,
        summarizer: Any,
        recorder: Any,
        torch_threads: int | str | None,
        normalize_rewards: bool = False,
        reward_scale: float = 1.0,
        reward_clip: float | tuple[float, float] | None = None,
        state_preprocessing: Any = None,
        reward_processing: Any = None,
        l2_regularization: float = 0.0,
        variable_noise: float = 0.0,
        return_clipping: tuple[float, float] | None = None,
    ) -> None:
        check_int("agent.batch_size", batch_size, 1)
        check_regularizers(l2_regularization, variable_noise)
        check_int("agent.learning_starts", learning_starts, 0)
        check_int("agent.n_step", n_step, 1)
        if gradient_steps != -1:
            check_int("agent.gradient_steps", gradient_steps, 1)
        check_number("agent.discount", discount, 0.0, 1.0)
        super().__init__(
            states,
            actions,
            max_episode_timesteps,
            parallel_interactions,
            seed,
            device,
            saver=saver,
            summarizer=summarizer,
            recorder=recorder,
            torch_threads=torch_threads,
            state_preprocessing=state_preprocessing,
            reward_processing=reward_processing,
        )
        self.batch_size, self.learning_starts = batch_size, learning_starts
        self.train_freq, self.train_unit = parse_train_freq(train_freq)
        self.gradient_steps = gradient_steps
        self.discount, self.n_step = discount, n_step
        self.l2_regularization, self.variable_noise = l2_regularization, variable_noise
        self.return_clipping = check_bounds("agent.return_clipping", return_clipping)
        self.reward_normalizer = reward_normalizer(
            normalize_rewards, reward_scale, reward_clip, discount, parallel_interactions
        )
        options = memory_options(memory)
        self._prioritized = options.get("sampling") == "prioritized"
        self._masked = [name for name, spec in self.action_specs.items if spec.type == "int"]
        self._memory_options = {
            "parallel": parallel_interactions,
            "n_step": n_step,
            "discount": discount,
            "mask_names": self._masked,
            "device": self.device,
            "seed": seed,
            **options,
        }
        self.memory = ReplayMemory(self.state_specs, self.action_specs, **self._memory_options)
        self._internals: Tensors = {}  # per-slot recurrent internals (``_carry_internals``)
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))
        self._last = self._slot_arrays()
        self._waiting = np.zeros(parallel_interactions, dtype=bool)  # observed, next state unknown
        self._waiting_reward = np.zeros(parallel_interactions, dtype=np.float32)
        self._since_train = 0  # timesteps since the last phase (summed over slots)
        self._episodes_since_train = 0
        self._replayed: set[Any] = set()  # trace files already in the memory (pretraining)

    def _slot_arrays(
        self, internals: dict[str, tuple[int, ...]] | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        """Per-slot copies of the last acted states, masks and actions ``(P, ...)``.

        With recurrent ``internals`` (``{path: shape}``) also the internals each slot acted
        with and those following its act, stored with its transition.
        """
        size = self.parallel_interactions
        arrays = {
            "states": {n: np.zeros((size, *s.shape), s.dtype) for n, s in self.state_specs.items},
            "masks": {
                n: np.ones((size, *s.shape, s.num_values), bool)
                for n, s in self.action_specs.items
                if n in self._masked
            },
            "actions": {n: np.zeros((size, *s.shape), s.dtype) for n, s in self.action_specs.items},
        }
        if internals:
            for kind in ("internals", "next_internals"):
                arrays[kind] = {p: np.zeros((size, *s), np.float32) for p, s in internals.items()}
        return arrays

    def _carry_internals(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Carry recurrent internals ``{layer path: shape}`` of the acting network (if any).

        Subclasses call this once their networks are built: each slot then keeps its
        internals between acts (zeroed at episode starts), and the memory stores them with
        every transition, so the update evaluates the networks one step from them.
        """
        if not shapes:
            return
        size = self.parallel_interactions
        self._internals = {
            path: torch.zeros((size, *shape), device=self.device) for path, shape in shapes.items()
        }
        self._last = self._slot_arrays(shapes)
        self.memory = ReplayMemory(
            self.state_specs, self.action_specs, internals=shapes, **self._memory_options
        )

    def initial_internals(self) -> dict[str, Any]:
        """Zero internals ``{layer path: array(shape)}`` for one independent episode."""
        return {p: np.zeros(x.shape[1:], np.float32) for p, x in self._internals.items()}

    # ------------------------------------------------------------------ acting
    def _act(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        if independent:
            with self._perturbed(deterministic):
                return self._select(states, masks, slots, True, deterministic)
        if self._waiting[slots].any():
            self._complete_waiting(states, masks, slots)
        warming_up = self.timesteps < self.learning_starts and not deterministic
        if self._internals:
            with self._perturbed(deterministic):
                actions = self._act_carrying(states, masks, slots, deterministic, warming_up)
        elif warming_up:
            actions = uniform_actions(
                self.action_specs, masks, len(slots), self._generator, self.device
            )
        else:
            with self._perturbed(deterministic):
                actions = self._select(states, masks, slots, False, deterministic)
        columns = self._columns(slots)
        last = self._last
        for name, x in states.items():
            last["states"][name][columns] = x.cpu().numpy() if not self._on_cpu else x.numpy()
        for name in self._masked:
            mask = masks.get(name)
            last["masks"][name][columns] = True if mask is None else mask.cpu().numpy()
        for name, a in actions.items():
            last["actions"][name][columns] = a if isinstance(a, np.ndarray) else a.cpu().numpy()
        return actions

    def acting_modules(self) -> list[nn.Module]:
        """The networks that choose actions (what variable noise and L2 regularization touch)."""
        raise NotImplementedError

    def _perturbed(self, deterministic: bool) -> AbstractContextManager[None]:
        """Within the block, the acting networks carry ``variable_noise`` (not when greedy)."""
        if deterministic or not self.variable_noise:
            return nullcontext()
        params = [p for module in self.acting_modules() for p in module.parameters()]
        return perturbed(params, self.variable_noise)

    def l2_term(self) -> torch.Tensor | float:
        """``l2_regularization / 2 * sum(w ** 2)`` over the acting networks' weight matrices."""
        return l2_penalty(self.l2_regularization, weight_matrices(self.acting_modules()))

    def _act_carrying(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        deterministic: bool,
        warming_up: bool,
    ) -> Tensors:
        """Act from the slots' internals, keep those for the memory, advance the slots'.

        During warm-up the network still runs (its internals must follow the episode) but
        the actions are uniformly random.
        """
        index = torch.as_tensor(slots, device=self.device)
        internals = {path: x[index] for path, x in self._internals.items()}
        actions, following = self._select_recurrent(states, masks, internals, deterministic, slots)
        if warming_up:
            actions = uniform_actions(
                self.action_specs, masks, len(slots), self._generator, self.device
            )
        columns = self._columns(slots)
        for kind, values in (("internals", internals), ("next_internals", following)):
            for path, x in values.items():
                self._last[kind][path][columns] = x.cpu().numpy()
        for path, x in following.items():
            self._internals[path][index] = x
        return actions

    def _act_internals(
        self, states: Tensors, masks: Tensors, internals: Any, batched: bool, deterministic: bool
    ) -> tuple[Tensors, dict[str, Any]]:
        """Independent act from user internals; returns actions and the next internals."""
        shapes = {path: tuple(x.shape[1:]) for path, x in self._internals.items()}
        given = self._given_internals(internals, shapes, states)
        slots = np.zeros(len(next(iter(given.values()))), dtype=np.int64)
        with self._perturbed(deterministic):
            actions, following = self._select_recurrent(states, masks, given, deterministic, slots)
        return actions, self._returned_internals(following, batched)

    def _select(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> dict[str, torch.Tensor | np.ndarray]:
        """The agent's actions (env-ready) for batched states of ``slots``.

        Exploration unless ``deterministic``; ``slots`` pick per-slot exploration state (e.g.
        Ornstein-Uhlenbeck noise). Recurrent agents act from zero internals here (independent
        acts without internals).
        """
        raise NotImplementedError

    def _select_recurrent(
        self,
        states: Tensors,
        masks: Tensors,
        internals: Tensors,
        deterministic: bool,
        slots: np.ndarray,
    ) -> tuple[Tensors, Tensors]:
        """Actions and the following internals, acting from ``{path: (B, *shape)}`` internals.

        As ``_select`` otherwise (``slots`` pick per-slot exploration state); only agents that
        call ``_carry_internals`` with internals implement it.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ observing
    def _observe(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Tensors | None,
        next_masks: Tensors | None = None,
    ) -> dict[str, float] | None:
        if next_states is not None:
            self._store(slots, rewards, terminals, next_states, next_masks or {})
        else:
            self._store_without_next(slots, rewards, terminals)
        if terminals.any():
            self._episodes_ended(slots[terminals > 0])
            self._episodes_since_train += int(np.count_nonzero(terminals))
        self._since_train += len(slots)
        return self._maybe_train()

    def _store(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Mapping[str, Any],
        next_masks: Mapping[str, Any],
    ) -> None:
        """Add the transitions of ``slots`` (their last act's rows) to the memory."""
        columns = self._columns(slots)
        rows = {
            kind: {n: x[columns] for n, x in arrays.items()} for kind, arrays in self._last.items()
        }
        self.memory.add(
            slots,
            rows["states"],
            rows["masks"],
            rows["actions"],
            rewards,
            terminals,
            next_states,
            next_masks,
            rows.get("internals"),
            rows.get("next_internals"),
        )

    def _store_without_next(
        self, slots: np.ndarray, rewards: np.ndarray, terminals: np.ndarray
    ) -> None:
        """Store transitions that have no next states given.

        Ended episodes use the last state as next state (terminated: not bootstrapped;
        truncated: bootstrapped from it, an approximation); the rest wait for the next act.
        """
        ended = terminals > 0
        if ended.any():
            done = slots[ended]
            self._store(done, rewards[ended], terminals[ended], *self._rows(done))
        running = slots[~ended]
        self._waiting[running] = True
        self._waiting_reward[running] = rewards[~ended]

    def _rows(self, slots: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The last acted states and masks of ``slots``."""
        return (
            {n: x[slots] for n, x in self._last["states"].items()},
            {n: x[slots] for n, x in self._last["masks"].items()},
        )

    def _complete_waiting(self, states: Tensors, masks: Tensors, slots: np.ndarray) -> None:
        """Store the waiting transitions of ``slots`` with these states as their next states."""
        rows = np.flatnonzero(self._waiting[slots])
        waiting = slots[rows]
        index = torch.as_tensor(rows, device=self.device)
        nexts = {n: x[index] for n, x in states.items()}
        next_masks = {n: m[index] for n, m in masks.items()}
        running = np.zeros(len(waiting), dtype=np.int64)
        self._store(waiting, self._waiting_reward[waiting], running, nexts, next_masks)
        self._waiting[waiting] = False

    def _episodes_ended(self, slots: np.ndarray) -> None:
        """Zero the recurrent internals of ``slots`` (their next act starts an episode).

        Subclasses with per-episode exploration state (Ornstein-Uhlenbeck noise) extend it.
        """
        if self._internals:
            ended = torch.as_tensor(slots, device=self.device)
            for x in self._internals.values():
                x[ended] = 0.0

    def reset(self) -> None:
        """Forget unfinished act/observe cycles and n-step windows; zero the internals."""
        super().reset()
        self._waiting[:] = False
        self.memory.clear_pending()
        for x in self._internals.values():
            x.zero_()

    # ------------------------------------------------------------------ training
    def _maybe_train(self) -> dict[str, float] | None:
        """Run a training phase when one is due; return its metrics."""
        done = self._episodes_since_train if self.train_unit == "episode" else self._since_train
        if done < self.train_freq:
            return None
        collected, self._since_train = self._since_train, 0  # a collection phase ends here
        self._episodes_since_train = 0
        if self.timesteps < self.learning_starts or len(self.memory) < self.batch_size:
            return None
        return self._train(self.gradient_steps if self.gradient_steps > 0 else collected)

    def _train(self, steps: int) -> dict[str, float]:
        """Run ``steps`` gradient steps on sampled batches; return their mean metrics.

        A uniform memory is sampled once for the whole phase (``steps * batch_size`` draws, in
        chunks of at most ``PHASE_ROWS``: the same stream as one draw per step, since the memory
        does not change during a phase) and ``_prepare_phase`` sees each chunk's sample, so an
        agent can evaluate what stays fixed during the phase (DQN's target network) in one
        pass. Prioritized memories are sampled per step and get each batch's new priorities
        (absolute TD errors).
        """
        metrics = self._phase_start()
        sums: torch.Tensor | float = 0.0
        size = self.batch_size
        whole = steps > 1 and self.memory.sampling == "uniform"
        # long phases (pretraining's num_updates, gradient_steps=-1) are drawn in chunks of at
        # most PHASE_ROWS rows: the same stream, bounded memory
        chunk = max(1, PHASE_ROWS // size) if whole else 1
        try:
            with denormals_flushed():
                for first in range(0, steps, chunk):
                    count = min(chunk, steps - first)
                    phase = self._normalized(self.memory.sample(count * size)) if whole else None
                    self._prepare_phase(phase)
                    for i in range(count):
                        if phase is None:
                            batch = self._normalized(self.memory.sample(size))
                        else:
                            batch = phase.rows(i * size, (i + 1) * size)
                        stats, priorities = self._gradient_step(batch)
                        sums = sums + stats
                        if self._prioritized:
                            self.memory.update_priorities(batch.indices, priorities.cpu().numpy())
        finally:
            self._prepare_phase(None)
        means = (sums / steps).tolist()  # type: ignore[union-attr]  # one host sync per phase
        metrics.update(zip(self.step_metrics, means, strict=True))
        return metrics

    def _normalized(self, batch: ReplaySample) -> ReplaySample:
        """``batch`` with its rewards through the reward normalizer (if any)."""
        if self.reward_normalizer is None:
            return batch
        return batch._replace(rewards=self.reward_normalizer(batch.rewards))

    def _prepare_phase(self, phase: ReplaySample | None) -> None:
        """See a phase's whole sample before its steps (None: sampled per step, or it ended)."""

    def td_target(self, rewards: Any, discounts: Any, following: Any) -> Any:
        """``rewards + discounts * following``, clipped to ``return_clipping`` (if set).

        The one place TD targets are formed (torch tensors or numpy arrays of one shape):
        ``discounts`` is ``discount**k`` (0 where the episode terminated) and ``following``
        the bootstrap value. Clipping the targets is Tensorforce's return clipping: there the
        value objective regresses onto the processed (n-step) returns.
        """
        target = rewards + discounts * following
        return target if self.return_clipping is None else target.clip(*self.return_clipping)

    #: names of the statistics ``_gradient_step`` returns, in order
    step_metrics: tuple[str, ...] = ()

    def _phase_start(self) -> dict[str, float]:
        """Set scheduled hyperparameters (learning rates) for a training phase; return them."""
        return {}

    def _gradient_step(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        """One gradient step; returns ``(stats (len(step_metrics),), |TD error| (B,))``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ pretraining
    def learn_from_traces(
        self, traces: list[Trace], objective: str, num_updates: int
    ) -> dict[str, float]:
        """Pretraining on loaded traces (``Agent.pretrain``).

        ``replay``: each trace's transitions enter the replay memory once (the step after the
        last is the last state: terminated episodes do not bootstrap; a truncated trace
        bootstraps from its last state, an approximation), then ``num_updates`` gradient steps
        run on sampled batches. ``imitation``: ``num_updates`` steps of behaviour cloning on
        random minibatches of the recorded steps (``_imitation_step``).
        """
        if objective == "replay":
            for trace in traces:
                if trace.path == EXPERIENCE or trace.path not in self._replayed:
                    self._replayed.add(trace.path)  # files enter once; experience each time
                    self._add_trace(trace)
            if len(self.memory) == 0:
                raise ConfigError("pretrain: the traces hold no transitions")
            return self._train(num_updates)
        states, masks, actions = _concatenated(traces, self.device)
        size = next(iter(actions.values())).shape[0]
        sums: torch.Tensor | float = 0.0
        for _ in range(num_updates):
            rows = torch.randint(size, (min(self.batch_size, size),), device=self.device)
            sums = sums + self._imitation_step(
                {n: x[rows] for n, x in states.items()},
                {n: x[rows] for n, x in masks.items()},
                {n: x[rows] for n, x in actions.items()},
            )
        return {tags.LOSS_IMITATION: float(sums) / num_updates}

    def _add_trace(self, trace: Trace) -> None:
        """Add one recorded episode's transitions to the memory (slot 0, in order)."""
        steps = len(trace.reward)
        following = np.minimum(np.arange(steps) + 1, steps - 1)
        full = self._last["masks"]
        masks = {
            n: trace.masks.get(n, np.ones((steps, *x.shape[1:]), bool)) for n, x in full.items()
        }
        internals, next_internals = trace_internals(self, trace) if self._internals else ({}, {})
        chunks = [np.arange(steps)] if self.n_step == 1 else np.arange(steps)[:, None]
        for rows in chunks:  # n-step windows take one step per call
            nexts = following[rows]
            self.memory.add(
                np.zeros(len(rows), dtype=np.int64),
                {n: x[rows] for n, x in trace.states.items()},
                {n: x[rows] for n, x in masks.items()},
                {n: x[rows] for n, x in trace.actions.items()},
                trace.reward[rows],
                trace.terminal[rows],
                {n: x[nexts] for n, x in trace.states.items()},
                {n: x[nexts] for n, x in masks.items()},
                {p: x[rows] for p, x in internals.items()},
                {p: x[rows] for p, x in next_internals.items()},
            )
        self.memory.clear_pending(np.zeros(1, dtype=np.int64))

    def _imitation_step(self, states: Tensors, masks: Tensors, actions: Tensors) -> torch.Tensor:
        """One behaviour-cloning gradient step toward the recorded actions; returns its loss."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Exploration generator and training-phase position (subclasses add their networks)."""
        return {
            **super().state_dict(),
            "generator": self._generator.get_state(),
            "since_train": torch.tensor(self._since_train),
            "episodes_since_train": torch.tensor(self._episodes_since_train),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` wrote (weights-only files lack these entries)."""
        super().load_state_dict(state)
        if "generator" in state:
            self._generator.set_state(state["generator"])
        if "since_train" in state:
            self._since_train = int(state["since_train"])
        if "episodes_since_train" in state:
            self._episodes_since_train = int(state["episodes_since_train"])

    def memory_state_dict(self) -> dict[str, Any]:
        """The replay memory's content and position (for full checkpoints with ``memory=True``)."""
        return self.memory.state_dict()

    def load_memory_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``memory_state_dict`` returned."""
        self.memory.load_state_dict(state)


def _concatenated(traces: list[Trace], device: torch.device) -> tuple[Tensors, Tensors, Tensors]:
    """States, masks and actions of all traces, concatenated along time, as tensors."""

    def cat(parts: list[dict[str, np.ndarray]]) -> Tensors:
        return {
            name: torch.as_tensor(np.concatenate([p[name] for p in parts])).to(device)
            for name in parts[0]
        }

    masks = cat([t.masks for t in traces]) if all(t.masks for t in traces) else {}
    return cat([t.states for t in traces]), masks, cat([t.actions for t in traces])
