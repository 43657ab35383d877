"""Behaviours Tensorforce's own test suite relies on (``tools/tensorforce_audit.py``), ours."""

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.core.returns import gae, nstep_advantages
from forceexp.errors import ConfigError

STATES = {"type": "float", "shape": (3,)}
ACTIONS = {"type": "int", "num_values": 3}


def _run(agent: Agent, steps: int, seed: int = 0) -> int:
    """Act/observe ``steps`` random-state steps (episodes of 5); return the updates run."""
    rng = np.random.default_rng(seed)
    updates = 0
    for t in range(steps):
        agent.act(states=rng.normal(size=3).astype(np.float32))
        updates += agent.observe(reward=float(rng.normal()), terminal=(t + 1) % 5 == 0)
    return updates


def _a2c(**kwargs) -> Agent:
    base = {"states": STATES, "actions": ACTIONS, "max_episode_timesteps": 5, "device": "cpu"}
    return Agent.create(agent="a2c", **{**base, "seed": 0, "rollout_length": 5, **kwargs})


def test_tracking_all_reports_the_latest_update_under_tensorforce_names():
    agent = _a2c(tracking="all", entropy_regularization=0.01)
    assert agent.tracked_tensors() == {}
    assert _run(agent, 10) == 2
    tracked = agent.tracked_tensors()
    for name in ("agent/policy-objective-loss", "agent/baseline-objective-loss", "agent/entropy"):
        assert np.isfinite(tracked[name])
    assert not any(name.startswith(("charts/", "losses/")) for name in tracked)  # summarizer's
    assert 0.0 < tracked["agent/entropy"] <= np.log(3) + 1e-6


def test_value_objective_is_the_named_form_of_the_value_objectives():
    base = dict(agent="tensorforce", states=STATES, actions=ACTIONS, max_episode_timesteps=5)
    agent = Agent.create(**base, objective=dict(type="value", value="action", huber_loss=None))
    assert agent.name == "dqn" and agent.spec["loss"] == "mse"
    state_value = dict(type="value", value="state")
    agent = Agent.create(**base, objective="policy_gradient", baseline_objective=state_value)
    assert agent.name == "vpg"
    with pytest.raises(
        ConfigError, match=r"agent.objective: {'type': 'value', 'value': 'state'} is invalid"
    ):
        Agent.create(**base, objective=state_value)
    with pytest.raises(ConfigError, match=r"agent.baseline_objective.value: None is invalid"):
        Agent.create(**base, objective="policy_gradient", baseline_objective=dict(type="value"))


def test_tracking_a_list_keeps_only_those_names():
    agent = _a2c(tracking=["agent/entropy", "losses/value_loss"])
    _run(agent, 5)
    assert set(agent.tracked_tensors()) == {"agent/entropy", "losses/value_loss"}
    assert _a2c().tracked_tensors() == {}
    with pytest.raises(ConfigError, match=r"agent.tracking: 'some' is invalid"):
        _a2c(tracking="some")


def test_generic_agent_is_the_default_for_a_dict_with_an_objective():
    spec = {"objective": "policy_gradient", "reward_estimation": {"horizon": "episode"}}
    agent = Agent.create(agent=spec, states=STATES, actions=ACTIONS, max_episode_timesteps=5)
    assert agent.name == "vpg"


def test_auto_network_rnn_appends_an_lstm_with_the_horizon():
    agent = _a2c(network=dict(type="auto", size=8, depth=1, rnn=2), baseline="auto")
    network = agent.policy.network
    assert network.lstm.horizon == 2 and network.lstm.size == 8
    assert network.internal_shapes == {"network.lstm": (2, 8)}
    assert agent.initial_internals()["network.lstm"].shape == (2, 8)
    states = {"state": torch.randn(4, 3)}
    zeros = {"network.lstm": torch.zeros(4, 2, 8)}
    stepped, following = network.step(states, zeros)
    assert torch.allclose(stepped, network(states)) and following["network.lstm"].abs().sum() > 0
    assert _run(agent, 10) == 2  # acts with per-slot internals, re-runs sequences in updates
    _, internals = agent.act(
        states=np.zeros(3, np.float32), internals=agent.initial_internals(), independent=True
    )
    assert internals["network.lstm"].shape == (2, 8)


def test_auto_network_rnn_is_refused_where_internals_are_not_carried():
    bounded = dict(type="float", shape=(1,), min_value=-1.0, max_value=1.0)
    with pytest.raises(ConfigError, match=r"critic\[0\].lstm: this layer keeps internals"):
        Agent.create(agent="ddpg", states=STATES, actions=bounded, critic=dict(type="auto", rnn=1))


def test_variable_noise_perturbs_acting_only_and_is_removed_after():
    agent = _a2c(variable_noise=1.0)
    before = [p.clone() for p in agent.policy.parameters()]
    state = np.ones(3, np.float32)
    acted = {int(agent.act(states=state, independent=True)) for _ in range(30)}
    for p, q in zip(agent.policy.parameters(), before, strict=True):
        assert torch.equal(p, q)
    assert agent._actor is None  # the noisy act takes the torch path
    greedy = {int(agent.act(states=state, independent=True, deterministic=True)) for _ in range(5)}
    assert len(greedy) == 1 and len(acted) == 3  # noise only when acting stochastically


def test_exploration_takes_allowed_random_actions_and_stores_their_log_prob():
    agent = _a2c(exploration=1.0, rollout_length=50)
    mask = np.array([True, False, True])
    seen = set()
    for _ in range(40):
        seen.add(int(agent.act(states={"state": np.zeros(3), "action_mask": mask})))
        agent.observe(reward=0.0)
    assert seen == {0, 2}
    buffer = agent.buffer
    rows = slice(0, 40)
    states = {name: x[rows, 0] for name, x in buffer.states.items()}
    actions = {name: x[rows, 0] for name, x in buffer.actions.items()}
    masks = {name: x[rows, 0] for name, x in buffer.masks.items()}
    log_prob, _, _ = agent.policy.evaluate(states, actions, masks)
    torch.testing.assert_close(log_prob, buffer.log_prob[rows, 0])
    with pytest.raises(ConfigError, match=r"agent.exploration: 1.5 is invalid"):
        _a2c(exploration=1.5)


def test_l2_regularization_adds_the_weight_penalty_gradient():
    """The fast step's ``l2 * w`` matches autograd (``test_fused``); here: weights shrink."""
    base, penalized = _a2c(fast_update=False), _a2c(fast_update=False, l2_regularization=0.5)
    names = [name for name, p in penalized.policy.named_parameters() if p.dim() == 2]
    assert len(penalized.policy.weights()) == len(names)  # weight matrices, not biases/log-std
    assert _run(base, 5) == _run(penalized, 5) == 1
    # the penalty pulled every weight matrix towards zero relative to the unpenalized run
    shrunk = sum(float(w.detach().pow(2).sum()) for w in penalized.policy.weights())
    kept = sum(float(w.detach().pow(2).sum()) for w in base.policy.weights())
    assert shrunk < kept


def test_regularizers_are_refused_by_name_where_not_offered():
    for key in ("l2_regularization", "variable_noise"):
        expected = rf"agent\.{key}: 0.1 is invalid; expected None or 0 \(agent 'random' has no"
        with pytest.raises(ConfigError, match=expected):
            Agent.create(agent="random", states=STATES, actions=ACTIONS, **{key: 0.1})
    with pytest.raises(ConfigError, match=r"agent 'random': got an unexpected keyword .*explor"):
        Agent.create(agent="random", states=STATES, actions=ACTIONS, exploration=0.1)


def test_nstep_advantages_match_a_reference_loop():
    torch.manual_seed(0)
    steps, slots, gamma = 9, 3, 0.9
    rewards, values, final = torch.randn(steps, slots), torch.randn(steps, slots), torch.randn(3)
    terminals = torch.zeros(steps, slots, dtype=torch.long)
    terminals[3, 0], terminals[5, 1] = 1, 2  # terminated; truncated (bootstraps final[1])
    lengths = torch.tensor([9, 7, 9])
    next_values = torch.cat([values[1:], final[None]])  # row t+1's value inside a segment
    next_values[5, 1], next_values[6, 1] = final[1], final[2]
    for horizon in (1, 2, 3, 20):
        got = nstep_advantages(rewards, values, next_values, terminals, gamma, horizon, lengths)
        for j in range(slots):
            for t in range(int(lengths[j])):
                total, scale = 0.0, 1.0
                for i in range(t, t + horizon):
                    total += scale * float(rewards[i, j])
                    last = i == t + horizon - 1 or terminals[i, j] != 0 or i + 1 >= lengths[j]
                    if last:
                        total += (
                            scale * gamma * float(next_values[i, j]) * (int(terminals[i, j]) != 1)
                        )
                        break
                    scale *= gamma
                assert float(got[t, j]) == pytest.approx(total - float(values[t, j]), abs=1e-5)
    full = gae(rewards, values, next_values, terminals, gamma, 1.0, lengths)
    torch.testing.assert_close(
        nstep_advantages(rewards, values, next_values, terminals, gamma, 20, lengths), full
    )


def test_reward_and_return_clipping_and_horizon_reach_the_update():
    agent = _a2c(
        reward_processing=dict(type="clipping", lower=-0.5, upper=0.5),
        return_processing=dict(type="clipping", lower=-0.2, upper=0.2),
        advantage_processing="batch_normalization",
        horizon=3,
        rollout_length=50,
    )
    assert agent.horizon == 3 and agent.normalize_advantages
    _run(agent, 10)
    stored = agent.buffer.reward[:10, 0]
    assert float(stored.abs().max()) <= 0.5 and float(stored.abs().max()) == 0.5
    batch = agent._targets(agent.buffer.batch(agent._bootstrap, agent.discount, 1.0, 3))
    assert float(batch.returns.abs().max()) <= 0.2 + 1e-6
    torch.testing.assert_close(batch.advantages, batch.returns - batch.value)
    assert agent.episodes == 2  # episode returns are reported raw
    with pytest.raises(ConfigError, match=r"agent.horizon: 0 is invalid"):
        _a2c(horizon=0)
    with pytest.raises(ConfigError, match=r"reward_processing\[0\].min_value: the input has no"):
        Agent.create(
            agent="trpo", states=STATES, actions=ACTIONS, reward_processing="linear_normalization"
        )


def test_batch_normalized_returns_have_mean_zero_and_unit_std():
    agent = _a2c(return_processing="batch_normalization", rollout_length=50)
    assert agent.normalize_returns
    _run(agent, 10)
    batch = agent._targets(agent.buffer.batch(agent._bootstrap, agent.discount, 1.0))
    assert float(batch.returns.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(batch.returns.std(correction=0)) == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(batch.advantages, batch.returns - batch.value)
    assert _run(_a2c(return_processing="batch_normalization", rollout_length=10), 10) == 1
    with pytest.raises(ConfigError, match=r"agent.normalize_returns: 1 is invalid"):
        _a2c(normalize_returns=1)


def test_predict_terminal_values_bootstraps_terminated_episodes():
    """With it a terminated step's target is reward + gamma V(final state), as a truncation."""
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    for predict in (False, True):
        agent = _a2c(predict_terminal_values=predict, rollout_length=50, gae_lambda=0.0)
        final = np.full(3, 2.0, np.float32)
        for t, reward in enumerate(rewards):
            agent.act(states=np.full(3, 0.1 * t, np.float32))
            agent.observe(reward=reward, terminal=t == 4, next_states=final if t == 4 else None)
        batch = agent.buffer.batch(agent._bootstrap, agent.discount, 0.0)
        with torch.inference_mode():
            v_final = float(agent.policy.value({"state": torch.as_tensor(final)[None]})[0])
        assert abs(v_final) > 1e-3  # the two targets differ
        bootstrap = agent.discount * v_final if predict else 0.0
        assert float(batch.returns[4]) == pytest.approx(5.0 + bootstrap, abs=1e-5)
    with pytest.raises(ConfigError, match=r"agent.predict_terminal_values: True is invalid"):
        Agent.create(agent="trpo", states=STATES, actions=ACTIONS, predict_terminal_values=True)


MIXED = {
    "int_global": {"type": "int", "shape": (2,), "num_values": 3},
    "int_predicted": {"type": "int", "num_values": 4},
    "clipped": {"type": "float", "min_value": -1.0, "max_value": 1.0},
    "squashed": {"type": "float", "min_value": 0.0, "max_value": 2.0},
    "beta": {"type": "float", "min_value": 1.0, "max_value": 2.0},
}


def test_tensorforce_distributions_map_onto_per_action_heads():
    policy = dict(
        network=dict(type="auto", size=8, depth=1),
        distributions=dict(
            int_global=dict(type="categorical", temperature_mode="global"),
            int_predicted=dict(type="categorical", temperature_mode="predicted"),
            clipped=dict(type="gaussian", stddev_mode="global", bounded_transform="clipping"),
            squashed=dict(type="gaussian", bounded_transform="tanh"),
            beta="beta",
        ),
    )
    agent = Agent.create(
        agent="tensorforce",
        states=STATES,
        actions=MIXED,
        max_episode_timesteps=5,
        objective="policy_gradient",
        reward_estimation=dict(horizon=2, estimate_advantage=True),
        policy=policy,
        update=4,
    )
    heads = agent.policy.heads
    assert heads["int_global"].temperature_mode == "global"
    assert heads["int_predicted"].temperature_mode == "predicted"
    assert (heads["clipped"].bounding, heads["squashed"].bounding) == ("clip", "squash")
    assert type(heads["beta"]).__name__ == "BetaHead"
    features = torch.randn(6, agent.policy.network.output_size)
    with torch.no_grad():
        heads["int_global"].temperature.fill_(5.0)  # softplus(5) + 0.01: a hotter policy
        flat = heads["int_global"](features).entropy()
        heads["int_global"].temperature.fill_(-5.0)
        sharp = heads["int_global"](features).entropy()
    assert bool((flat > sharp).all())
    rng = np.random.default_rng(0)
    for t in range(8):
        actions = agent.act(states=rng.normal(size=3))
        assert 1.0 <= actions["beta"] <= 2.0 and 0.0 <= actions["squashed"] <= 2.0
        agent.observe(reward=1.0, terminal=t == 7)
    assert agent.updates == 2 and agent.horizon == 2


def test_tensorforce_distributions_refuse_what_has_no_counterpart():
    base = dict(agent="tensorforce", states=STATES, actions=MIXED, objective="policy_gradient")
    predicted = dict(distributions=dict(clipped=dict(type="gaussian", stddev_mode="predicted")))
    with pytest.raises(ConfigError, match=r"clipped.stddev_mode: 'predicted' is invalid"):
        Agent.create(**base, policy=predicted)
    with pytest.raises(ConfigError, match=r"temperature: 'global' applies to int actions only"):
        Agent.create(
            **base,
            policy=dict(
                distributions=dict(clipped=dict(type="categorical", temperature_mode="global"))
            ),
        )
    with pytest.raises(ConfigError, match=r"distributions: unknown actions \['nope'\]"):
        Agent.create(agent="ppo", states=STATES, actions=MIXED, distributions=dict(nope={}))
    by_type = Agent.create(**base, policy=dict(distributions=dict(float="beta", nope="beta")))
    assert {type(h).__name__ for h in by_type.policy.heads.values()} == {
        "CategoricalHead",
        "BetaHead",
    }


def test_skip_linear_uses_the_network_output_as_logits():
    network = [dict(type="dense", size=8), dict(type="reshape", shape=(2, 4))]
    actions = {"type": "int", "shape": (2,), "num_values": 4}
    agent = _a2c(actions=actions, network=network, distributions={"action": {"skip_linear": True}})
    states = {"state": torch.randn(5, 3)}
    with torch.no_grad():
        logits = agent.policy.heads["action"](agent.policy.network(states)).logits
        expected = agent.policy.network(states).view(5, 2, 4)
    torch.testing.assert_close(logits, torch.log_softmax(expected, -1))
    assert agent._fused is None  # the fast path needs a linear head
    assert _run(agent, 5) == 1


def test_skip_linear_refuses_a_mismatched_output_and_other_options():
    categorical = dict(type="categorical", skip_linear=True)
    with pytest.raises(ConfigError, match=r"skip_linear: True is invalid; expected a network outp"):
        Agent.create(
            agent="tensorforce",
            states=STATES,
            actions=ACTIONS,
            objective="policy_gradient",
            policy=dict(network=[dict(type="dense", size=5)], distributions=categorical),
        )
    with pytest.raises(ConfigError, match=r"temperature: 'global' is invalid; expected None with"):
        _a2c(
            network=[dict(type="dense", size=3)],
            distributions={"action": {"skip_linear": True, "temperature": "global"}},
        )
    with pytest.raises(ConfigError, match=r"skip_linear: True applies to int actions only"):
        _a2c(
            actions={"type": "float", "shape": (3,)},
            distributions={"action": {"skip_linear": True}},
        )


def test_a2c_learns_from_given_experience_with_its_own_targets():
    agent = _a2c(reward_processing=dict(type="clipping", lower=-0.1, upper=0.1), horizon=2)
    rng = np.random.default_rng(0)
    states = [rng.normal(size=3).astype(np.float32) for _ in range(6)]
    actions = [int(agent.act(states=s, independent=True)) for s in states]
    terminal = [False] * 5 + [True]
    agent.experience(states=states, actions=actions, terminal=terminal, reward=[5.0] * 6)
    before = [p.clone() for p in agent.policy.parameters()]
    metrics = agent.update()
    assert agent.updates == 1 and np.isfinite(metrics["losses/value_loss"])
    assert any(
        not torch.equal(p, q) for p, q in zip(agent.policy.parameters(), before, strict=True)
    )


def test_recurrent_baseline_carries_its_own_internals():
    agent = _a2c(
        network=dict(type="auto", size=8, depth=1, rnn=2),
        baseline=dict(type="auto", size=7, depth=1, rnn=1),
    )
    assert agent.policy.internal_shapes == {"network.lstm": (2, 8), "baseline.lstm": (2, 7)}
    assert _run(agent, 10) == 2
    states = {"state": torch.randn(3, 3)}
    internals = {
        path: torch.randn(3, *shape) for path, shape in agent.policy.internal_shapes.items()
    }
    with torch.no_grad():
        stepped = agent.policy.value(states, internals)
        _, _, value, following = agent.policy.act_recurrent(states, {}, True, internals, True)
        assert set(following) == set(internals)
        torch.testing.assert_close(value, stepped)
        assert not torch.allclose(stepped, agent.policy.value(states))  # zeros differ
        starts = torch.zeros(1, 3, dtype=torch.bool)
        seq = {name: x[None] for name, x in states.items()}
        torch.testing.assert_close(agent.policy.sequence_values(seq, internals, starts)[0], stepped)
    feed_forward_policy = _a2c(baseline=dict(type="auto", rnn=1))
    assert _run(feed_forward_policy, 10) == 2
    _, internals = feed_forward_policy.act(
        states=np.zeros(3), internals=feed_forward_policy.initial_internals(), independent=True
    )
    assert set(internals) == {"baseline.lstm"}


def test_recurrent_agents_learn_from_given_episodes():
    agent = _a2c(
        network=dict(type="auto", size=8, depth=1, rnn=2),
        baseline=dict(type="auto", size=7, depth=1, rnn=1),
    )
    rng = np.random.default_rng(0)
    for _ in range(2):
        states, internals_seen, actions = [], [], []
        internals = agent.initial_internals()
        for _ in range(4):
            states.append(rng.normal(size=3))
            internals_seen.append(internals)
            action, internals = agent.act(states=states[-1], internals=internals, independent=True)
            actions.append(int(action))
        agent.experience(
            states=states,
            internals=internals_seen,
            actions=actions,
            terminal=[0, 0, 0, 1],
            reward=[1.0, 0.0, 1.0, 0.0],
        )
    before = [p.clone() for p in agent.policy.parameters()]
    assert np.isfinite(agent.update()["losses/policy_loss"])
    changed = [
        not torch.equal(p, q) for p, q in zip(agent.policy.parameters(), before, strict=True)
    ]
    assert all(changed[:2])  # the policy network's first layer learned
