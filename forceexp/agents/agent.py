"""Agent facade: create/act/observe/reset/close and call-order checks.

No learning maths lives here: subclasses implement ``_act`` and ``_observe``.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from forceexp.agents.inputs import (
    MASK_SUFFIX,
    InputConversion,
    Tensors,
    check_finite_rewards,
    reward_array,
    terminal_array,
)
from forceexp.agents.model_view import ModelView
from forceexp.agents.pipelines import Pipelines
from forceexp.core.normalization import RewardNormalizer
from forceexp.core.preprocessing import INTERNALS_KEY
from forceexp.core.schedules import Schedule
from forceexp.errors import ConfigError, ProtocolError, check_int, message
from forceexp.registry import is_spec_file, load_spec_file
from forceexp.specs import Specs, parse_specs

log = logging.getLogger(__name__)

#: ``device='auto'`` uses CUDA only for states at least this large with rank >= 2 (images):
#: small MLPs run faster on the CPU (a GPU act costs ~0.7 ms of launches and copies).
AUTO_CUDA_MIN_STATE_SIZE = 1024


def resolve_device(device: str | torch.device, states: Specs | None = None) -> torch.device:
    """Validate ``'cpu'``/``'cuda[:i]'``; map ``'auto'`` by state shapes.

    ``'auto'`` picks CUDA when it is available and some state is image-like (rank >= 2 and at
    least ``AUTO_CUDA_MIN_STATE_SIZE`` values), else the CPU.
    """
    if str(device) == "auto":
        cuda = _image_like(states) and torch.cuda.is_available()
        return torch.device("cuda" if cuda else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            message("device", device, "'cpu', 'cuda', 'cuda:<i>' or 'auto'")
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' was requested but CUDA is not available; use 'cpu' or 'auto'"
        )
    return resolved


def _image_like(states: Specs | None) -> bool:
    """Whether a state is image-like: rank >= 2 and >= ``AUTO_CUDA_MIN_STATE_SIZE`` values."""
    return states is not None and any(
        len(spec.shape) >= 2 and spec.size >= AUTO_CUDA_MIN_STATE_SIZE for _, spec in states.items
    )


def apply_torch_threads(
    torch_threads: int | str | None, device: torch.device, states: Specs | None = None
) -> None:
    """Set torch's intra-op thread count (process-wide) for the agent's workload.

    ``'auto'`` sets one thread for small networks on the CPU (no image-like state): their
    kernels are too small to split, and torch's default pool made them 1.3-2.8x slower here.
    An int sets that many threads; None leaves torch alone.
    """
    if torch_threads is None:
        return
    if torch_threads == "auto":
        if device.type == "cpu" and not _image_like(states):
            torch.set_num_threads(1)
        return
    if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
        raise ConfigError(message("torch_threads", torch_threads, "'auto', an int >= 1 or None"))
    torch.set_num_threads(torch_threads)


def seed_everything(seed: int | None, path: str = "seed") -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random number generators.

    Raises:
        ConfigError: ``seed`` is not an int or None (``path`` names it).
    """
    check_int(path, seed, optional=True)
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _canonical_kwargs(target: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Translate Tensorforce argument names for the agent class (or partial) ``target``."""
    from forceexp.agents.aliases import translate

    cls = getattr(target, "func", target)  # functools.partial
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not inspect.isclass(cls):
        return kwargs
    defaults = {  # base classes first: a variant's __init__(*, flag, **kwargs) overrides
        key: p.default
        for base in reversed(cls.__mro__)
        if "__init__" in vars(base)
        for key, p in inspect.signature(base.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    defaults.update(getattr(target, "keywords", None) or {})
    return translate(name, kwargs, defaults)


class Agent(InputConversion, Pipelines):
    """Base class of all agents; also the entry point ``Agent.create`` / ``Agent.load``.

    Args:
        states: State spec (one unnamed spec dict or a dict of named spec dicts).
        actions: Action spec (same forms).
        max_episode_timesteps: Episode length limit, if known (taken from the environment).
        parallel_interactions: Number of parallel environment slots ``act``/``observe`` serve.
        seed: Seeds Python, NumPy and torch; None leaves them alone.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        saver: Periodic checkpoint spec (a directory or a dict), or None.
        summarizer: TensorBoard summary spec (a directory or a dict), or None.
        recorder: Trace recording spec (a directory or a dict), or None.
        torch_threads: torch's intra-op threads (process-wide): ``'auto'`` (one thread for small
            networks on the CPU), an int, or None to leave torch's setting alone.
        state_preprocessing: Layers run on states before the networks (Tensorforce's
            ``state_preprocessing``, ``forceexp.core.preprocessing``): one spec or list for
            every state, or a dict of them by state name or type; None: raw states.
        reward_processing: Layers run on each observed reward before learning (a spec or a
            list); reported episode returns stay raw.
    """

    #: registry name, set by ``AGENTS.register``
    name: ClassVar[str] = "agent"
    #: whether ``reward_normalizer`` applies when batches are sampled (replay agents store raw
    #: rewards, as SB3) instead of to the rewards ``_observe`` receives
    normalizes_sampled_rewards: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Agent:
        """Capture the resolved constructor arguments as ``spec`` (what ``save`` writes)."""
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"agent {cls.name!r}: {exc}") from None
        bound.apply_defaults()
        spec = {key: value for key, value in bound.arguments.items() if key != "self"}
        spec.update(spec.pop("kwargs", {}))
        obj.spec = {"agent": cls.name, **spec}
        return obj

    def __init__(
        self,
        states: Any,
        actions: Any,
        max_episode_timesteps: int | None = None,
        parallel_interactions: int = 1,
        seed: int | None = None,
        device: str = "auto",
        saver: Any = None,
        summarizer: Any = None,
        recorder: Any = None,
        torch_threads: int | str | None = "auto",
        state_preprocessing: Any = None,
        reward_processing: Any = None,
    ) -> None:
        #: the states ``act`` receives (checked against these)
        self.input_specs: Specs = parse_specs(states, "state")
        self.action_specs: Specs = parse_specs(actions, "action")
        for name in self.input_specs:
            if name in self.action_specs and not self.input_specs.single:
                raise ConfigError(f"states.{name}: state and action names must differ")
        if not isinstance(parallel_interactions, int) or parallel_interactions < 1:
            raise ConfigError(
                message("parallel_interactions", parallel_interactions, "an int >= 1")
            )
        self.max_episode_timesteps = max_episode_timesteps
        self.parallel_interactions = parallel_interactions
        self.device = resolve_device(device, self.input_specs)
        apply_torch_threads(torch_threads, self.device, self.input_specs)
        self._build_preprocessing(state_preprocessing, reward_processing)
        self.seed = seed
        seed_everything(seed)
        self.timesteps = self.episodes = self.updates = 0
        #: learning-reward transform (``normalize_rewards``/``reward_scale``/``reward_clip``),
        #: set by learning agents through ``reward_normalizer``; None: rewards as observed
        self.reward_normalizer: RewardNormalizer | None = None
        self.started: tuple[float, int] | None = None  # (clock, timesteps) at the first stored act
        self._experiences: list[Any] = []  # episodes given to ``experience``, for ``update``
        self._acting = np.zeros(parallel_interactions, dtype=bool)
        self._episode_return = np.zeros(parallel_interactions, dtype=np.float64)
        #: the last observe's rewards as learned from (after reward processing), ``(B,)``
        self.processed_rewards = np.zeros(0, dtype=np.float32)
        self._episode_length = np.zeros(parallel_interactions, dtype=np.int64)
        self._all_slots = np.arange(parallel_interactions)
        self._all_list = self._all_slots.tolist()
        self._on_cpu = self.device.type == "cpu"
        self._mask_names = {
            (f"action{MASK_SUFFIX}" if self.action_specs.single else f"{n}{MASK_SUFFIX}"): n
            for n, s in self.action_specs.items
            if s.type == "int"
        }
        from forceexp.observers import build_observers

        self.observers = build_observers(saver=saver, summarizer=summarizer, recorder=recorder)
        for observer in self.observers:
            observer.attach(self)

    def _use_fast_path(self, requested: bool, reason: Callable[[], str | None]) -> bool:
        """Whether updates take the hand-derived fast path; logs why not when it was requested.

        ``reason()`` says why the agent's networks or features rule it out (None: they do not).
        """
        if not requested:
            return False
        why = reason()
        if why is not None:
            log.info("%s update: autograd path (no fast path: %s)", self.name, why)
        return why is None

    # ------------------------------------------------------------------ creation
    @staticmethod
    def create(agent: Any = "ppo", environment: Any = None, **kwargs: Any) -> Agent:
        """Create an agent.

        Args:
            agent: A registry key (``'ppo'``, ``'random'``, ...), a ``.json``/``.yaml`` file, a
                dict with ``agent``/``type``, an ``Agent`` subclass, a partial (from Hydra's
                ``_partial_``), or an existing agent (returned as is).
            environment: An environment whose specs and ``max_episode_timesteps`` fill in
                ``states``, ``actions`` and ``max_episode_timesteps`` when not given.
            **kwargs: Constructor arguments of the agent; also ``tracking='all'`` (or a list
                of names) to read the latest metrics back with ``tracked_tensors()``.
        """
        from forceexp.agents import AGENTS

        if isinstance(agent, Agent):
            return agent
        for _ in range(2):  # a dict may name a spec file: dict(agent='ppo.json', recorder=...)
            if is_spec_file(agent):
                agent = load_spec_file(agent)
            if isinstance(agent, Mapping):
                spec = dict(agent)
                # Tensorforce's default agent is the generic one, which needs an objective
                default = "tensorforce" if "objective" in spec else "ppo"
                agent = spec.pop("agent", None) or spec.pop("type", default)
                kwargs = {**spec, **kwargs}
        tracking = kwargs.pop("tracking", None)
        if environment is not None:
            from forceexp.environments import create

            env = create(environment)
            kwargs.setdefault("states", env.states())
            kwargs.setdefault("actions", env.actions())
            kwargs.setdefault("max_episode_timesteps", env.max_episode_timesteps())
            if env is not environment:
                env.close()
        if isinstance(agent, str):
            agent = AGENTS.get(agent, "agent")
        if not callable(agent):
            raise ConfigError(message("agent", agent, "a name, spec file, dict, class or partial"))
        created = agent(**_canonical_kwargs(agent, kwargs))
        if not isinstance(created, Agent):
            raise ConfigError(message("agent", type(created).__name__, "an Agent subclass"))
        from forceexp.observers.tracked import attach_tracking

        attach_tracking(created, tracking)
        return created

    @staticmethod
    def load(
        directory: Any = None,
        filename: str | None = None,
        format: str | None = None,
        environment: Any = None,
        **overrides: Any,
    ) -> Agent:
        """Create a saved agent and restore its state (see ``docs/save_restore.md``).

        Args:
            directory: Folder of saved files (or one saved file).
            filename: File to load (default: the latest in the folder's ``checkpoint.json``,
                else the highest ``agent-<counter>`` file); a suffix picks the format.
            format: ``'checkpoint'``, ``'numpy'`` or ``'hdf5'`` (detected when None).
            environment: Fills in specs the saved config lacks.
            **overrides: Constructor arguments replacing saved ones (e.g. ``saver=None``).
        """
        from forceexp.agents import persistence

        return persistence.load(directory, filename, format, environment, **overrides)

    def save(
        self,
        directory: Any,
        filename: str | None = None,
        format: str = "checkpoint",
        append: str | None = None,
        memory: bool = False,
    ) -> str:
        """Save to ``directory/<filename>[-<counter>].pt|.npz|.h5`` atomically; return the path.

        Args:
            directory: Target folder.
            filename: File name stem (default ``'agent'``).
            format: ``'checkpoint'`` (full state), ``'numpy'`` or ``'hdf5'`` (weights); or an
                export of the deterministic policy for deployment (``docs/export.md``):
                ``'onnx'``, ``'torchscript'`` or ``'numpy_policy'`` (runs with NumPy alone).
            append: ``'timesteps'``, ``'episodes'`` or ``'updates'``: add that counter to the name.
            memory: Include the replay memory (replay-based agents, ``'checkpoint'`` format):
                larger files, but a resumed run continues exactly.
        """
        from forceexp.agents import persistence

        if format in ("onnx", "torchscript", "numpy_policy"):
            from forceexp.export import export

            if memory:
                raise ConfigError(f"save.memory: format={format!r} exports the policy only")
            return export(self, directory, filename, format, append)

        return persistence.save(self, directory, filename, format, append, memory)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """Learned state beyond the counters: reward statistics (if normalized) and pipelines.

        Subclasses add their weights, optimizers and generators to this dict.
        """
        out = self._pipeline_state()
        normalizer = self.reward_normalizer
        if normalizer is not None and normalizer.normalize:
            out["reward_normalizer"] = normalizer.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (entries it lacks keep their current value)."""
        if self.reward_normalizer is not None and "reward_normalizer" in state:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
        self._load_pipeline_state(state)

    # ------------------------------------------------------------------ interaction
    def act(
        self,
        states: Any,
        internals: Any = None,
        parallel: int | Sequence[int] | np.ndarray = 0,
        independent: bool = False,
        deterministic: bool = False,
    ) -> Any:
        """Choose actions for one state or a batch of states.

        Args:
            states: One state (raw array for a single unnamed state, or a dict of named states,
                optionally with ``<action>_mask`` entries), a batch of them stacked on a leading
                axis, or a list of state dicts.
            internals: Recurrent internals for independent acts (``initial_internals()`` at an
                episode start, then the ones returned by the previous act); None when not used.
            parallel: Slot index, or one index per batch row (default for a full batch: all).
            independent: Act without storing anything (evaluation); no ``observe`` follows.
            deterministic: Take the most likely action instead of sampling.

        Returns:
            Actions mirroring the input: one value/array (single unnamed action) or a dict, with
            a leading batch axis for batched input; ``(actions, internals)`` if ``internals`` was
            given.
        """
        batch, masks, batched = self._to_batch(states)
        size = next(iter(batch.values())).shape[0]
        if independent and batched and isinstance(parallel, int) and parallel == 0:
            slots = np.zeros(size, dtype=np.int64)  # independent rows need no slots
        else:
            slots = self._slots(parallel, size, batched)
        if not independent:
            columns = self._columns(slots)
            if self._acting[columns].any():
                busy = slots[self._acting[slots]].tolist()
                raise ProtocolError(
                    f"act: parallel slot(s) {busy} already acted; call observe first"
                )
            self._acting[columns] = True
        following = internals
        carried = None  # the preprocessing internals of an independent act with internals
        if self.preprocessing is not None:
            batch, internals, carried = self._preprocess(batch, internals, slots, independent)
        if internals is not None and independent and self.initial_internals():
            actions, following = self._act_internals(
                batch, masks, internals, batched, deterministic
            )
        else:
            actions = self._act(batch, masks, slots, independent, deterministic)
        if carried is not None:
            following = {**following, INTERNALS_KEY: carried}
        out = {
            name: a if isinstance(a, np.ndarray) else a.cpu().numpy() for name, a in actions.items()
        }
        if not independent:
            if self.started is None:  # the clock of charts/SPS
                self.started = (time.perf_counter(), self.timesteps)
            self.timesteps += len(slots)
            for observer in self.observers:
                observer.on_act(self, batch, masks, out, slots)
        result = self._format_actions(out, batched)
        return result if internals is None else (result, following)

    def observe(
        self,
        reward: Any = 0.0,
        terminal: Any = 0,
        parallel: int | Sequence[int] | np.ndarray = 0,
        next_states: Any = None,
    ) -> bool:
        """Report the outcome of the last ``act`` of each slot.

        Args:
            reward: Reward (or one per slot).
            terminal: 0/False running, 1/True terminated, 2 truncated (or one per slot).
            parallel: Slot index or indices, as for ``act``.
            next_states: Optional states that followed (the final states where truncated).
                Learners bootstrap from their value; without them, bootstrapping waits for the
                next ``act`` and truncated steps use the last state's value.

        Returns:
            Whether an update ran.
        """
        rewards = reward_array(reward)
        terminals = terminal_array(terminal)
        slots = self._slots(parallel, len(rewards), rewards.ndim == 1 and np.ndim(reward) == 1)
        check_finite_rewards(rewards, slots, self.timesteps)
        if len(terminals) != len(slots):
            raise ConfigError(f"observe: {len(terminals)} terminals for {len(slots)} rewards")
        columns = self._columns(slots)
        if not self._acting[columns].all():
            idle = slots[~self._acting[slots]].tolist()
            raise ProtocolError(f"observe: parallel slot(s) {idle} have not acted; call act first")
        nexts = next_masks = None
        if next_states is not None and self._uses_next_states(slots, terminals):
            nexts, next_masks, _ = self._to_batch(
                next_states, batched=len(slots) > 1 or np.ndim(reward) == 1
            )
            if self.preprocessing is not None:  # the slots' histories continue into them
                nexts = self.preprocessing(nexts, slots, False)
        metrics = self._learn(slots, rewards, terminals, nexts, next_masks)
        if terminals.any():
            for module in self._pipelines().values():
                module.reset(slots[terminals > 0])
        self._acting[columns] = False
        self._track_episodes(slots, columns, rewards, terminals)  # raw rewards: reported returns
        self._report_update(metrics)
        return metrics is not None

    def _learn(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        nexts: Tensors | None,
        next_masks: Tensors | None,
        processed: bool = False,
    ) -> dict[str, float] | None:
        """Store one checked step of raw ``rewards`` (processed for learning) and train if due.

        Shared by ``observe`` and the Ray learner, which replays its workers' steps through it
        (``processed``: their rewards went through the worker's ``reward_processing``).
        """
        learning = rewards
        if self.reward_processing is not None and not processed:
            learning = self.reward_processing.process(rewards, slots)
        if self.reward_normalizer is not None:
            self.reward_normalizer.observe(slots, learning, terminals)
            if not self.normalizes_sampled_rewards:
                learning = self.reward_normalizer(learning)
        self.processed_rewards = learning
        return self._observe(slots, learning, terminals, nexts, next_masks)

    def _report_update(self, metrics: dict[str, float] | None) -> None:
        """Count an update that ran (``metrics`` not None) and tell the observers."""
        if metrics is not None:
            self.updates += 1
            for observer in self.observers:
                observer.on_update(self, metrics)

    def _track_episodes(
        self, slots: np.ndarray, columns: Any, rewards: np.ndarray, terminals: np.ndarray
    ) -> None:
        self._episode_return[columns] += rewards
        self._episode_length[columns] += 1
        for observer in self.observers:
            observer.on_observe(self, rewards, terminals, slots)
        for slot in slots[terminals.nonzero()[0]].tolist():
            self.episodes += 1
            ret, length = float(self._episode_return[slot]), int(self._episode_length[slot])
            self._episode_return[slot], self._episode_length[slot] = 0.0, 0
            for observer in self.observers:
                observer.on_episode(self, int(slot), ret, length)

    def pretrain(
        self,
        directory: str,
        num_iterations: int,
        num_traces: int | None = 1,
        num_updates: int = 1,
        objective: str = "replay",
        skip_unreadable: bool = False,
    ) -> dict[str, float]:
        """Learn from recorded traces without environment interaction.

        Args:
            directory: Folder of ``.npz`` traces (written by the recorder or ``write_trace``).
            num_iterations: Iterations; each loads ``num_traces`` shuffled files.
            num_traces: Trace files per iteration (None: all).
            num_updates: Updates per iteration.
            objective: ``'replay'`` (the agent's own update on recorded rewards, as in
                Tensorforce) or ``'imitation'`` (behaviour cloning of the recorded actions).
            skip_unreadable: Skip unreadable trace files with a warning (default: fail).

        Returns:
            Metrics of the last iteration.
        """
        from forceexp.agents.pretraining import pretrain

        return pretrain(
            self, directory, num_iterations, num_traces, num_updates, objective, skip_unreadable
        )

    def experience(
        self, states: Any, actions: Any, terminal: Any, reward: Any, internals: Any = None
    ) -> None:
        """Give complete episodes collected elsewhere; ``update`` learns from them.

        Args:
            states: Per step: a list of states (arrays or dicts, masks as ``<action>_mask``) or
                the states stacked on a leading time axis.
            actions: Per step: a list of actions (values or dicts) or stacked arrays.
            terminal: Per step 0, 1 (terminated) or 2 (truncated); the last must be non-zero.
            reward: Per step rewards.
            internals: Recurrent internals of the acts: per step a dict as ``act`` returns
                them, or ``{layer path: (T, *shape)}``. Replay agents store them with the
                transitions (without them the current network is run over the episodes from
                zero internals); on-policy agents re-run the episodes and need none.
        """
        from forceexp.agents.experience import experience

        experience(self, states, actions, terminal, reward, internals)

    def update(self) -> dict[str, float]:
        """Run one update now on the episodes given to ``experience`` since the last update.

        Returns:
            The update's metrics (``loss/policy``, ``loss/value``, ...).
        """
        from forceexp.agents.experience import update

        return update(self)

    def summarize(self, summary: str, value: Any, step: int | None = None) -> None:
        """Write a custom summary declared in ``summarizer=dict(custom=...)`` (step: timesteps)."""
        from forceexp.observers.summarizer import Summarizer

        for observer in self.observers:
            if isinstance(observer, Summarizer):
                observer.summarize(self, summary, value, step)
                return
        raise ConfigError(
            "summarize: the agent has no summarizer; create it with "
            "summarizer=dict(directory=..., custom=dict(<name>=dict(type=...)))"
        )

    @property
    def model(self) -> ModelView:
        """Tensorforce's ``agent.model``: the agent's attributes and its parameter values.

        ``agent.model.exploration.value()`` is the current exploration as a torch scalar
        (``forceexp.agents.model_view``); other attributes are the agent's own.
        """
        return ModelView(self)

    def parameter_schedules(self) -> dict[str, Schedule]:
        """The agent's scheduled hyperparameters by Tensorforce name (``agent.model``'s)."""
        return {}

    def get_architecture(self) -> str:
        """The agent's networks, one ``name: module`` entry each (Tensorforce's wording)."""
        modules = {k: v for k, v in vars(self).items() if isinstance(v, torch.nn.Module)}
        return "\n".join(f"{name}: {module}" for name, module in modules.items())

    def tracked_tensors(self) -> dict[str, float | np.ndarray]:
        """Latest values of the quantities tracked with ``tracking=`` (empty without it).

        Names are Tensorforce's (``agent/entropy``); docs/tracking.md lists which agent has
        which. Batch-valued names (distribution parameters, returns) hold arrays.
        """
        from forceexp.observers.tracked import TrackedValues

        for observer in self.observers:
            if isinstance(observer, TrackedValues):
                return dict(observer.values)
        return {}

    def reset(self) -> None:
        """Forget unfinished act/observe cycles (counters and learned state are kept)."""
        self._acting[:] = False
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        for module in self._pipelines().values():
            module.reset()

    def initial_internals(self) -> dict[str, Any]:
        """Initial recurrent internals for independent acts (empty when not recurrent)."""
        return {}

    def close(self) -> None:
        """Flush and close observers (saver, summarizer, recorder)."""
        for observer in self.observers:
            observer.close(self)
        self.observers = []

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ for subclasses
    def _act(
        self,
        states: Tensors,
        masks: Tensors,
        slots: np.ndarray,
        independent: bool,
        deterministic: bool,
    ) -> Tensors:
        """Return env-ready actions ``{name: (B, *shape)}`` for batched states."""
        raise NotImplementedError

    def _act_internals(
        self, states: Tensors, masks: Tensors, internals: Any, batched: bool, deterministic: bool
    ) -> tuple[Tensors, dict[str, Any]]:
        """Independent act from given recurrent internals; returns actions and next internals."""
        raise NotImplementedError

    def _given_internals(
        self, internals: Any, shapes: dict[str, tuple[int, ...]], states: Tensors
    ) -> Tensors:
        """User internals (``act(internals=...)``) as tensors ``{path: (B, *shape)}``, checked.

        Raises:
            ConfigError: The keys are not the layer paths, or a shape does not match.
        """
        if not isinstance(internals, dict) or set(internals) != set(shapes):
            raise ConfigError(
                message("act.internals", internals, f"a dict with keys {sorted(shapes)}")
            )
        size = next(iter(states.values())).shape[0]
        given = {}
        for path, shape in shapes.items():
            x = torch.as_tensor(np.asarray(internals[path], dtype=np.float32), device=self.device)
            if tuple(x.shape[-len(shape) :]) != shape or x.numel() != size * int(np.prod(shape)):
                raise ConfigError(
                    f"act.internals[{path!r}]: shape {tuple(x.shape)} does not match "
                    f"{shape} (per row, {size} rows)"
                )
            given[path] = x.reshape(size, *shape)
        return given

    @staticmethod
    def _returned_internals(following: Tensors, batched: bool) -> dict[str, np.ndarray]:
        """Next internals as arrays for the caller of ``act`` (no batch axis if not batched)."""
        out = {path: x.cpu().numpy() for path, x in following.items()}
        return out if batched else {path: x[0] for path, x in out.items()}

    def _uses_next_states(self, slots: np.ndarray, terminals: np.ndarray) -> bool:
        """Whether ``_observe`` needs this step's next states (converting them costs time)."""
        return True

    def _observe(
        self,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        next_states: Tensors | None,
        next_masks: Tensors | None = None,
    ) -> dict[str, float] | None:
        """Store the outcome; return update metrics if an update ran, else None.

        ``next_states`` (and the action masks given with them) are None when the caller gave
        none or ``_uses_next_states`` declined them.
        """
        return None
