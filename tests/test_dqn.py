"""DQN family: learning on toy envs, masking everywhere, targets, saving, errors."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.agents import off_policy
from forceexp.core.memory import ReplaySample
from forceexp.environments.testing import IdentityEnvironment, MaskedChoiceEnvironment
from forceexp.errors import ConfigError

FAST = {
    "seed": 0,
    "device": "cpu",
    "network": {"type": "auto", "size": 64, "depth": 1, "activation": "relu"},
    "memory": 5000,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "learning_starts": 200,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "discount": 0.5,
    "exploration": {"type": "linear", "num_steps": 1500, "initial_value": 1.0, "final_value": 0.02},
}


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("dqn", {}),
        ("double_dqn", {}),
        ("dueling_dqn", {}),
        ("dqn", {"n_step": 3, "memory": {"capacity": 5000, "sampling": "prioritized"}}),
    ],
)
def test_dqn_variants_learn_identity_in_seconds(name, extra):
    agent = {"agent": name, **FAST, **extra}
    runner = Runner(agent=agent, environment=IdentityEnvironment, num_parallel=2, seed=0)
    runner.run(num_timesteps=3000, use_tqdm=False)
    result = runner.evaluate(num_episodes=10)
    runner.close()
    assert np.mean(runner.episode_returns[:20]) < 4.0  # random play scores about 2 of 8
    assert result["return_mean"] >= 7.5


def test_variants_set_their_flag_and_save_it():
    assert Agent.create("double_dqn", environment=IdentityEnvironment).double_q is True
    dueling = Agent.create("dueling_dqn", environment=IdentityEnvironment)
    assert dueling.dueling is True
    assert dueling.spec["dueling"] is True
    assert dueling.spec["agent"] == "dueling_dqn"


def test_masked_dqn_never_picks_a_masked_action():
    env = MaskedChoiceEnvironment(num_values=6, num_valid=2, seed=3)
    agent = Agent.create(agent={"agent": "dqn", **FAST, "learning_starts": 0}, environment=env)
    states = env.reset()
    for _ in range(600):
        for deterministic in (False, True):
            action = agent.act(states=states, independent=True, deterministic=deterministic)
            assert states["action_mask"][action]
        action = agent.act(states=states)  # stored, epsilon-greedy (mostly random early on)
        assert states["action_mask"][action]
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal, next_states=states if terminal else None)
        if terminal:
            states = env.reset()
    assert agent.updates > 0


def _batch(agent, next_mask):
    """A two-row batch with a given mask on the next states."""
    zeros = torch.zeros(2, 3)
    return ReplaySample(
        states={"state": zeros},
        masks={},
        actions={"action": torch.zeros(2, dtype=torch.int64)},
        rewards=torch.tensor([1.0, 2.0]),
        next_states={"state": zeros},
        next_masks={"action": next_mask},
        discounts=torch.tensor([0.5, 0.0]),
        weights=torch.ones(2),
        indices=np.arange(2),
    )


@pytest.mark.parametrize("double_q", [False, True])
def test_td_targets_take_the_max_over_allowed_values_only(double_q):
    agent = Agent.create(
        agent="dqn",
        states={"type": "float", "shape": (3,)},
        actions={"type": "int", "num_values": 3},
        double_q=double_q,
        seed=0,
    )
    for q in (agent.q, agent.target):  # Q(s', .) = (10, 5, 1) whatever the state
        head = q.heads["action"]
        torch.nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.tensor([10.0, 5.0, 1.0]))
    mask = torch.tensor([[False, True, True], [False, True, True]])
    targets = agent.td_targets(_batch(agent, mask))["action"]
    assert torch.allclose(targets, torch.tensor([1.0 + 0.5 * 5.0, 2.0]))  # terminated: no bootstrap
    unmasked = agent.td_targets(_batch(agent, torch.ones(2, 3, dtype=torch.bool)))["action"]
    assert torch.allclose(unmasked, torch.tensor([1.0 + 0.5 * 10.0, 2.0]))


def test_transitions_without_next_states_complete_at_the_next_act():
    env = IdentityEnvironment(num_values=3, episode_length=4)
    agent = Agent.create(agent={"agent": "dqn", **FAST}, environment=env)
    states = env.reset()
    visited = [states]
    for _ in range(8):  # two episodes, next states never given to observe
        action = agent.act(states=states)
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal)
        if terminal:
            states = env.reset()
        visited.append(states)
    assert len(agent.memory) == 8
    batch = agent.memory.sample(256)
    running = batch.discounts > 0
    assert running.sum() > 0 and (~running).sum() > 0
    assert torch.all(batch.discounts[running] == 0.5)


def test_memory_options_and_their_errors():
    env = IdentityEnvironment
    agent = Agent.create("dqn", environment=env, memory=dict(type="recent", capacity=64))
    assert agent.memory.capacity == 64 and agent.memory.sampling == "recent"
    with pytest.raises(ConfigError, match=r"agent.memory.type: 'fifo' is invalid"):
        Agent.create("dqn", environment=env, memory=dict(type="fifo", capacity=64))
    with pytest.raises(ConfigError, match=r"agent.memory: .* expected a dict with a 'capacity'"):
        Agent.create("dqn", environment=env, memory=dict(sampling="uniform"))
    with pytest.raises(ConfigError, match=r"agent.memory: 'big' is invalid"):
        Agent.create("dqn", environment=env, memory="big")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tau": 1.5}, r"agent.tau: 1.5 is invalid; expected a number in \[0.0, 1.0\]"),
        ({"loss": "l1"}, r"agent.loss: 'l1' is invalid; expected one of \('huber', 'mse'\)"),
        ({"gradient_steps": 0}, r"agent.gradient_steps: 0 is invalid; expected an int >= 1"),
        ({"batch_size": 0}, r"agent.batch_size: 0 is invalid"),
        ({"target_update_interval": 0}, r"agent.target_update_interval: 0 is invalid"),
        ({"discount": 2}, r"agent.discount: 2 is invalid"),
        ({"train_freq": 0}, r"agent.train_freq: 0 is invalid; expected an int >= 1"),
        ({"train_freq": [0, "episode"]}, r"agent.train_freq\[0\]: 0 is invalid"),
        (
            {"train_freq": [1, "hour"]},
            r"agent.train_freq: \[1, 'hour'\] is invalid; expected an int or \[n, 'step'",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Agent.create("dqn", environment=IdentityEnvironment, **kwargs)


def test_float_actions_are_refused_with_a_pointer_to_continuous_agents():
    with pytest.raises(
        ConfigError,
        match=r"actions.action: Q-learning needs int \(num_values\) or bool actions.*sac",
    ):
        Agent.create(
            "dqn",
            states={"type": "float", "shape": (2,)},
            actions={"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0},
        )


@pytest.mark.parametrize("format", ["checkpoint", "numpy", "hdf5"])
def test_save_load_round_trip_keeps_the_greedy_policy(tmp_path, format):
    agent = {"agent": "dqn", **FAST, "dueling": True}
    runner = Runner(agent=agent, environment=IdentityEnvironment, num_parallel=2, seed=0)
    runner.run(num_timesteps=800, use_tqdm=False)
    trained = runner.agent
    trained.save(tmp_path, format=format)
    loaded = Agent.load(tmp_path, format=format)
    for states in np.split(np.eye(4, dtype=np.float32), 2):  # batches of parallel_interactions
        expected = trained.act(states=states, independent=True, deterministic=True)
        np.testing.assert_array_equal(
            loaded.act(states=states, independent=True, deterministic=True), expected
        )
    for name, value in trained.q.state_dict().items():
        torch.testing.assert_close(loaded.q.state_dict()[name], value)
    assert type(loaded) is type(trained) and loaded.dueling
    runner.close()


def _filled_pair(**kwargs):
    """Two agents alike but for the update path, with the same transitions in memory."""
    spec = {
        "agent": "dqn",
        "states": {"type": "float", "shape": (4,)},
        "actions": {"type": "int", "num_values": 3},
        "network": {"type": "auto", "size": 32, "depth": 2, "activation": "relu"},
        "learning_rate": 1e-2,
        "max_grad_norm": 0.5,  # some steps clipped
        "seed": 3,
        **kwargs,
    }
    fast, slow = (
        Agent.create({**spec, "fast_update": True}),
        Agent.create({**spec, "fast_update": False}),
    )
    assert fast._fast is not None and slow._fast is None
    rng = np.random.default_rng(0)
    for agent in (fast, slow):
        rng = np.random.default_rng(0)
        for _ in range(4):
            size = 16
            masks = rng.random((size, 3)) < 0.6
            masks[:, 1] = True
            agent.memory.add(
                np.zeros(size, dtype=np.int64),
                {"state": rng.standard_normal((size, 4)).astype(np.float32)},
                {"action": masks},
                {"action": rng.integers(0, 3, size)},
                3 * rng.standard_normal(size).astype(np.float32),  # both sides of Huber's kink
                rng.choice([0, 1, 2], size, p=[0.8, 0.1, 0.1]),
                {"state": rng.standard_normal((size, 4)).astype(np.float32)},
                {"action": np.roll(masks, 1, 0)},
            )
    return fast, slow


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"double_q": True},
        {"loss": "mse"},
        {"memory": {"capacity": 1000, "sampling": "prioritized"}},
    ],
)
def test_fast_td_steps_match_autograd(kwargs):
    """The shared fast path (core/dense.py) takes the same steps as autograd."""
    fast, slow = _filled_pair(**kwargs)
    for step in range(6):
        batch = fast.memory.sample(32)
        same = slow.memory.sample(32)
        np.testing.assert_array_equal(batch.indices, same.indices)
        stats, errors = fast._gradient_step(batch)
        expected, expected_errors = slow._gradient_step(same)
        torch.testing.assert_close(stats, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(errors, expected_errors, rtol=1e-4, atol=1e-5)
        if step == 2:
            for agent in (fast, slow):
                agent.target.load_state_dict(agent.q.state_dict())
    for p, q in zip(fast.q.parameters(), slow.q.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"double_q": True}, {"return_clipping": (-1.0, 1.0)}])
def test_a_phase_sampled_at_once_takes_the_steps_of_per_step_batches(kwargs):
    """``_train(n)`` draws the phase's n batches in one call and (fast path) bootstraps them in
    one target pass: the same steps as n phases of one step each, on both paths."""
    phased, stepped = _filled_pair(**kwargs)
    autograd_phased, autograd_stepped = (_filled_pair(**kwargs)[1] for _ in range(2))
    phased._train(8)
    autograd_phased._train(8)
    for _ in range(8):
        stepped._train(1)
        autograd_stepped._train(1)
    for a, b in ((phased, stepped), (autograd_phased, autograd_stepped)):
        for p, q in zip(a.q.parameters(), b.q.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0.0, atol=1e-6)
    for p, q in zip(phased.q.parameters(), autograd_phased.q.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert phased._fast._following is None  # the phase's values are dropped after it


def test_a_long_phase_is_drawn_in_bounded_chunks_with_the_same_steps(monkeypatch):
    """Pretraining's num_updates can be large: phases draw at most PHASE_ROWS rows at once."""
    chunked, stepped = _filled_pair()
    monkeypatch.setattr(off_policy, "PHASE_ROWS", 3 * chunked.batch_size)  # chunks of 3 steps
    drawn = []
    sample = chunked.memory.sample
    monkeypatch.setattr(chunked.memory, "sample", lambda n: drawn.append(n) or sample(n))
    chunked._train(8)
    for _ in range(8):
        stepped._train(1)
    assert drawn == [3 * chunked.batch_size] * 2 + [2 * chunked.batch_size]
    for p, q in zip(chunked.q.parameters(), stepped.q.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0.0, atol=1e-6)


def test_fast_path_is_skipped_where_it_does_not_apply():
    env = MaskedChoiceEnvironment
    assert Agent.create("dqn", environment=env, dueling=True)._fast is None
    assert Agent.create("dqn", environment=env, fast_update=False)._fast is None
    assert Agent.create("dqn", environment=env)._fast is not None


def _drive(agent, env, states, steps):
    """Act and observe ``steps`` times; returns the last states and the actions taken."""
    actions = []
    for _ in range(steps):
        action = agent.act(states=states)
        actions.append(int(action))
        states, terminal, reward = env.execute(actions=action)
        agent.observe(reward=reward, terminal=terminal, next_states=states)
        if terminal:
            states = env.reset()
    return states, actions


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_train_freq_in_episodes_trains_once_per_n_ended_episodes(num_parallel):
    """SB3's ``train_freq=(2, "episode")`` with ``gradient_steps=-1``: a phase after every
    second ended episode (summed over slots), as many gradient steps as timesteps since the last."""
    agent = Agent.create(
        agent={**FAST, "agent": "dqn", "learning_starts": 0, "batch_size": 4},
        environment=IdentityEnvironment,  # 8-step episodes
        parallel_interactions=num_parallel,
        train_freq=[2, "episode"],
        gradient_steps=-1,
    )
    phases: list[tuple[int, int]] = []
    train = agent._train
    agent._train = lambda steps: phases.append((agent.timesteps, steps)) or train(steps)
    envs = [IdentityEnvironment(seed=i) for i in range(num_parallel)]
    states = np.stack([env.reset() for env in envs])
    for _ in range(32):
        actions = agent.act(states=states, parallel=list(range(num_parallel)))
        steps = [env.execute(actions=int(a)) for env, a in zip(envs, actions, strict=True)]
        states = np.stack([s for s, _, _ in steps])
        terminals = [t for _, t, _ in steps]
        for i, env in enumerate(envs):
            if terminals[i]:
                states[i] = env.reset()
        agent.observe(
            reward=[r for _, _, r in steps], terminal=terminals, parallel=list(range(num_parallel))
        )
    per_phase = 16  # two 8-step episodes: one slot runs both, or two slots one each
    expected = [(t, per_phase) for t in range(per_phase, 32 * num_parallel + 1, per_phase)]
    assert phases == expected
    assert agent.updates == len(expected)


def test_checkpoint_with_memory_resumes_exactly(tmp_path):
    env = IdentityEnvironment(seed=1)
    agent = Agent.create(agent={"agent": "dqn", **FAST, "train_freq": 3}, environment=env)
    states, _ = _drive(agent, env, env.reset(), 301)  # mid-phase: since_train is saved too
    agent.save(tmp_path, memory=True)
    twin_env, twin_states = copy.deepcopy(env), states.copy()
    loaded = Agent.load(tmp_path)
    assert len(loaded.memory) == len(agent.memory) == 301
    _, actions = _drive(agent, env, states, 300)
    _, twin_actions = _drive(loaded, twin_env, twin_states, 300)
    assert actions == twin_actions
    for p, q in zip(agent.q.parameters(), loaded.q.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_default_checkpoints_leave_the_memory_out(tmp_path):
    env = IdentityEnvironment(seed=1)
    agent = Agent.create(agent={"agent": "dqn", **FAST}, environment=env)
    _drive(agent, env, env.reset(), 50)
    small = Path(agent.save(tmp_path / "small"))
    large = Path(agent.save(tmp_path / "large", memory=True))
    assert len(Agent.load(small).memory) == 0
    assert large.stat().st_size > small.stat().st_size


def test_memory_saving_errors(tmp_path):
    agent = Agent.create(agent={"agent": "dqn", **FAST}, environment=IdentityEnvironment)
    with pytest.raises(ConfigError, match=r"save.memory: .* format='checkpoint' only, not 'numpy'"):
        agent.save(tmp_path, format="numpy", memory=True)
    ppo = Agent.create("ppo", environment=IdentityEnvironment)
    with pytest.raises(ConfigError, match=r"save.memory: agent 'ppo' has no replay memory"):
        ppo.save(tmp_path, memory=True)
    with pytest.raises(ConfigError, match=r"saver.memory: .* format='checkpoint' only"):
        Agent.create(
            agent={"agent": "dqn", **FAST},
            environment=IdentityEnvironment,
            saver={"directory": str(tmp_path), "format": "hdf5", "memory": True},
        )


def test_saver_with_memory_writes_it_periodically(tmp_path):
    env = IdentityEnvironment(seed=1)
    saver = {"directory": str(tmp_path), "frequency": 100, "unit": "timesteps", "memory": True}
    agent = Agent.create(agent={"agent": "dqn", **FAST}, environment=env, saver=saver)
    _drive(agent, env, env.reset(), 250)
    agent.close()
    assert len(Agent.load(tmp_path).memory) == 250


@pytest.mark.parametrize("masked", [False, True])
def test_fast_acting_matches_the_autograd_path(masked):
    """Acting through the stack draws the same random numbers and picks the same actions."""
    env = MaskedChoiceEnvironment(num_values=5, num_valid=2, masks=masked, seed=2)
    spec = {"agent": "dqn", **FAST, "learning_starts": 0}
    fast = Agent.create(agent={**spec, "fast_update": True}, environment=env)
    slow = Agent.create(agent={**spec, "fast_update": False}, environment=env)
    slow.q.load_state_dict(fast.q.state_dict())
    for step in range(200):
        states = env.reset()
        for deterministic in (False, True):
            expected = slow.act(states=states, independent=True, deterministic=deterministic)
            got = fast.act(states=states, independent=True, deterministic=deterministic)
            assert int(got) == int(expected), (step, deterministic)
