"""DDPG (dpg), TD3 and SAC: learning a toy target, the loss maths, save/load, errors."""

import math

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner, tags
from forceexp.agents import AGENTS, DDPGAgent, SACAgent, TD3Agent
from forceexp.core.memory import ReplaySample
from forceexp.core.value_functions import GaussianActor
from forceexp.environments.testing import TargetEnvironment
from forceexp.errors import ConfigError

SMALL = {"type": "auto", "size": 32, "depth": 2, "activation": "relu"}
BOX = {"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 1.0}
ACTIONS = {
    "steer": {"type": "float", "shape": (), "min_value": -2.0, "max_value": 2.0},
    "gas": {"type": "float", "shape": (2,), "min_value": 0.0, "max_value": 1.0},
}
NAMES = ("dpg", "td3", "sac")


def make(name, **kwargs):
    options = {"states": BOX, "actions": ACTIONS, "network": SMALL, "critic": SMALL}
    options.update(seed=0, device="cpu", memory=1000, batch_size=16, learning_starts=0)
    return Agent.create(name, **{**options, **kwargs})


@pytest.mark.parametrize("name", NAMES)
def test_agent_learns_to_match_a_continuous_target(name):
    """One-step episodes (reward -|a - s|): random play scores about -0.67, the best 0."""
    agent = {
        "agent": name,
        "seed": 0,
        "device": "cpu",
        "network": SMALL,
        "critic": SMALL,
        "discount": 0.0,
        "learning_starts": 200,
        "batch_size": 64,
        "learning_rate": 3e-3,
    }
    environment = {"environment": TargetEnvironment, "episode_length": 1}
    runner = Runner(agent=agent, environment=environment, num_parallel=1, seed=0)
    runner.run(num_timesteps=1200, use_tqdm=False)
    result = runner.evaluate(num_episodes=50)
    runner.close()
    assert np.mean(runner.episode_returns[:100]) < -0.4
    assert result["return_mean"] > -0.1


def test_ddpg_alias_and_registry():
    assert AGENTS.get("ddpg") is DDPGAgent
    assert isinstance(make("ddpg"), DDPGAgent)
    assert isinstance(make("td3"), TD3Agent) and isinstance(make("sac"), SACAgent)


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_named_within_bounds_and_training_reports_metrics(name):
    agent = make(name, exploration=0.5) if name != "sac" else make(name)
    updated = False
    for _ in range(40):
        actions = agent.act({"state": np.random.uniform(-1, 1, 2).astype(np.float32)})
        assert -2.0 <= actions["steer"] <= 2.0 and actions["gas"].shape == (2,)
        assert np.all((actions["gas"] >= 0.0) & (actions["gas"] <= 1.0))
        updated = agent.observe(reward=1.0, terminal=False) or updated
    metrics = agent._train(2)
    assert updated and np.isfinite(list(metrics.values())).all()
    assert set(agent.step_metrics) | {tags.LEARNING_RATE} <= set(metrics)


def test_sac_log_prob_matches_torch_tanh_gaussian():
    torch.manual_seed(0)
    body = torch.nn.Identity()
    body.output_size = 3
    actor = GaussianActor(body, 2)
    states = torch.randn(256, 3) * 2.0
    actions, log_prob = actor(states, generator=torch.Generator().manual_seed(1))
    mean, std = actor.mean(states), actor.log_std(states).clamp(-20, 2).exp()
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))  # the same draw
    torch.testing.assert_close(actions, torch.tanh(mean + noise * std))
    base = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.transforms.TanhTransform()]
    )
    inside = actions.abs().amax(-1) < 0.999  # where atanh(action) is accurate in float32
    assert inside.sum() > 100
    expected = squashed.log_prob(actions.clamp(-0.999, 0.999))
    torch.testing.assert_close(log_prob[inside], expected[inside], rtol=1e-3, atol=1e-3)
    assert torch.isfinite(log_prob).all()  # also where tanh saturates
    deterministic, _ = actor(states, deterministic=True)
    torch.testing.assert_close(deterministic, torch.tanh(mean))


class _ConstantActor(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, states, internals=None):
        return torch.full((states["state"].shape[0], 1), self.value)


class _LinearCritic(torch.nn.Module):
    """Q(s, a) = scale * a (the action input only)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, states, actions):
        return self.scale * actions[:, 0]


def _batch(rewards, discounts):
    size = len(rewards)
    states = {"state": torch.zeros(size, 2)}
    return ReplaySample(
        states=states,
        masks={},
        actions={"action": torch.zeros(size, 1)},
        rewards=torch.tensor(rewards),
        next_states=states,
        next_masks={},
        discounts=torch.tensor(discounts),
        weights=torch.ones(size),
        indices=np.arange(size),
    )


def test_td3_target_smooths_clips_and_takes_the_smaller_twin():
    action = {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0}
    agent = make("td3", actions=action, target_policy_noise=0.0)
    agent.actor_target = _ConstantActor(0.8)
    agent.critic_targets = torch.nn.ModuleList([_LinearCritic(2.0), _LinearCritic(-3.0)])
    batch = _batch([1.0, 0.5, -1.0, 2.0], [0.9, 0.9, 0.0, 0.5])
    # by hand: min(2 * 0.8, -3 * 0.8) = -2.4; r + d * -2.4 (terminated rows: r)
    expected = torch.tensor([1.0 - 2.16, 0.5 - 2.16, -1.0, 2.0 - 1.2])
    torch.testing.assert_close(agent.target_values(batch), expected)
    # noise of std 10 is clipped to +-0.5, then the action to [-1, 1]: a' in {0.3, 1.0}
    agent.target_policy_noise = 10.0
    targets = agent.target_values(batch)
    smoothed = (targets - batch.rewards) / (-3.0 * batch.discounts)  # the smaller twin: -3 a'
    smoothed = smoothed[batch.discounts > 0]
    assert torch.all(
        torch.isclose(smoothed, torch.tensor(0.3)) | torch.isclose(smoothed, torch.tensor(1.0))
    )
    assert targets[2] == -1.0


def test_ddpg_has_one_critic_and_updates_the_actor_every_step():
    agent = make("dpg")
    assert len(agent.critics) == 1 and len(make("td3").critics) == 2
    before = [p.clone() for p in agent.actor.parameters()]
    for _ in range(20):
        agent.act({"state": np.zeros(2, np.float32)})
        agent.observe(reward=0.0, terminal=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters(), strict=True))


def test_sac_learns_its_temperature_or_keeps_a_fixed_one():
    learned = make("sac", entropy_coef="auto_0.5")
    assert math.isclose(learned.log_alpha.exp().item(), 0.5, rel_tol=1e-6)
    assert learned.target_entropy == -3.0
    fixed = make("sac", entropy_coef=0.2, target_entropy=-1.0)
    for agent in (learned, fixed):
        for _ in range(20):
            agent.act({"state": np.zeros(2, np.float32)})
            agent.observe(reward=0.0, terminal=False)
    assert learned.log_alpha.item() != math.log(0.5)
    assert fixed.log_alpha.item() == pytest.approx(math.log(0.2))
    assert "alpha_optimizer" not in fixed.state_dict()


def _trained(name, **kwargs):
    agent = make(name, **kwargs)
    for step in range(30):
        agent.act({"state": np.random.uniform(-1, 1, 2).astype(np.float32)})
        agent.observe(reward=float(step % 3), terminal=step % 10 == 9)
    return agent


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["checkpoint", "numpy", "hdf5"])
def test_save_load_round_trip_gives_identical_deterministic_actions(name, fmt, tmp_path):
    agent = _trained(name)
    path = agent.save(tmp_path, format=fmt)
    loaded = Agent.load(tmp_path, format=fmt)
    assert type(loaded) is type(agent)
    states = {"state": np.random.default_rng(1).uniform(-1, 1, (5, 2)).astype(np.float32)}
    for _ in range(2):
        want = agent.act(states, independent=True, deterministic=True, parallel=[0] * 5)
        got = loaded.act(states, independent=True, deterministic=True, parallel=[0] * 5)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert path
    for key in ("critic_targets", "actor_target"):  # saved, not re-copied from the online nets
        for sub, tensor in agent.state_dict().get(key, {}).items():
            torch.testing.assert_close(loaded.state_dict()[key][sub], tensor)


def test_weights_only_state_copies_missing_targets():
    agent, other = _trained("td3"), make("td3", seed=1)
    other.load_state_dict(
        {"actor": agent.actor.state_dict(), "critics": agent.critics.state_dict()}
    )
    for online, target in (
        (other.actor, other.actor_target),
        (other.critics, other.critic_targets),
    ):
        for a, b in zip(online.parameters(), target.parameters(), strict=True):
            assert torch.equal(a, b)
    sac = make("sac")
    sac.load_state_dict({"log_alpha": torch.tensor(-1.0)})
    assert sac.log_alpha.item() == -1.0


def test_ornstein_uhlenbeck_noise_restarts_at_episode_ends():
    agent = make("dpg", exploration={"type": "ou", "sigma": 0.3}, parallel_interactions=2)
    for _ in range(5):
        agent.act({"state": np.zeros((2, 2), np.float32)}, parallel=[0, 1])
        agent.observe(reward=[0.0, 0.0], terminal=[False, True], parallel=[0, 1])
    assert np.all(agent.noise.state[1] == 0.0) and np.any(agent.noise.state[0] != 0.0)


def test_learning_rate_schedule_reaches_every_optimizer():
    schedule = {"type": "linear", "num_steps": 100, "initial_value": 1e-3, "final_value": 0.0}
    agent = make("sac", learning_rate=schedule, batch_size=4)
    for _ in range(30):
        agent.act({"state": np.zeros(2, np.float32)})
        agent.observe(reward=0.0, terminal=False)
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.7)  # at timestep 30


def test_layer_list_critic_sees_states_and_action():
    layers = [{"type": "dense", "size": 16, "activation": "relu"}]
    agent = make("td3", network=layers, critic=layers)
    assert agent.critics[0].network.output_size == 16
    agent.act({"state": np.zeros(2, np.float32)})


@pytest.mark.parametrize("name", NAMES)
def test_int_bool_and_unbounded_actions_are_refused(name):
    for action in (
        {"type": "int", "num_values": 3},
        {"type": "bool"},
        {"type": "float", "shape": (2,)},
    ):
        with pytest.raises(ConfigError, match=rf"actions.action: {name} needs bounded float"):
            make(name, actions=action)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match=r"agent.entropy_coef: 'auto_x' is invalid"):
        make("sac", entropy_coef="auto_x")
    with pytest.raises(ConfigError, match=r"agent.entropy_coef: -0.1 is invalid"):
        make("sac", entropy_coef=-0.1)
    with pytest.raises(ConfigError, match=r"agent.target_entropy: 'high' is invalid"):
        make("sac", target_entropy="high")
    with pytest.raises(ConfigError, match=r"agent.target_update_interval: 0 is invalid"):
        make("sac", target_update_interval=0)
    with pytest.raises(ConfigError, match=r"agent.policy_delay: 0 is invalid"):
        make("td3", policy_delay=0)
    with pytest.raises(ConfigError, match=r"agent.target_policy_noise: -1 is invalid"):
        make("td3", target_policy_noise=-1)
    with pytest.raises(ConfigError, match=r"agent.target_noise_clip: 'x' is invalid"):
        make("td3", target_noise_clip="x")
    with pytest.raises(ConfigError, match=r"agent.tau: 2 is invalid"):
        make("dpg", tau=2)
    with pytest.raises(ConfigError, match=r"agent.exploration: 'x' is invalid"):
        make("dpg", exploration="x")
    with pytest.raises(ConfigError, match=r"states.action: this name is reserved"):
        make("sac", states={"action": BOX})
    with pytest.raises(ConfigError, match=r"network.size: \[400, 0\] is invalid"):
        make("sac", network={"type": "auto", "size": [400, 0]})


@pytest.mark.parametrize("name", NAMES)
def test_device_auto_puts_everything_on_the_agent_device(name):
    agent = make(name, device="auto")
    for module in (agent.actor, agent.critics, agent.critic_targets):
        assert {p.device for p in module.parameters()} == {agent.device}
    _ = agent.act({"state": np.zeros(2, np.float32)})


def test_auto_network_takes_a_list_of_layer_sizes():
    agent = make("td3", network={"type": "auto", "size": [8, 4], "activation": "relu"})
    assert [m.out_features for m in agent.actor.network.mlp if hasattr(m, "out_features")] == [8, 4]
    assert agent.actor.network.output_size == 4


def test_td3_updates_actor_and_targets_every_policy_delay_steps():
    agent = _trained("td3", learning_starts=1000)  # filled, not trained
    batch = agent.memory.sample(8)
    actor = [p.clone() for p in agent.actor.parameters()]
    target = [p.clone() for p in agent.critic_targets.parameters()]
    agent._gradient_step(batch)  # step 1 of policy_delay=2: the critics only
    assert all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters(), strict=True))
    targets = agent.critic_targets.parameters()
    assert all(torch.equal(a, b) for a, b in zip(target, targets, strict=True))
    agent._gradient_step(batch)
    assert not all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters(), strict=True))
    assert agent.state_dict()["steps"] == 2


@pytest.mark.parametrize("format", ["checkpoint", "numpy"])
def test_td3_with_ou_noise_resumes_with_the_same_noise(tmp_path, format):
    """The noise generator and each slot's Ornstein-Uhlenbeck state are saved with the agent."""
    spec = {
        "agent": "td3",
        "seed": 0,
        "device": "cpu",
        "learning_starts": 0,
        "exploration": {"type": "ornstein_uhlenbeck", "sigma": 0.3},
    }
    agent = Agent.create(spec, environment=TargetEnvironment)
    states = np.zeros(1, dtype=np.float32)
    for _ in range(5):  # move the OU process and the generator away from their start
        agent.act(states=states)
        agent.observe(reward=0.0, terminal=0)
    agent.save(tmp_path, format=format)
    loaded = Agent.load(tmp_path, format=format)
    np.testing.assert_array_equal(loaded.noise.state, agent.noise.state)
    for _ in range(3):
        ours, theirs = agent.act(states=states), loaded.act(states=states)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
        agent.observe(reward=0.0, terminal=0)
        loaded.observe(reward=0.0, terminal=0)
