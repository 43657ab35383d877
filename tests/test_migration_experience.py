"""``agent.experience`` + ``agent.update``: PPO learns from episodes collected elsewhere."""

import numpy as np
import pytest

from forceexp import Agent, Environment
from forceexp.errors import ConfigError, ProtocolError


def collect_episode(agent, environment):
    states_list, internals_list, actions_list, terminals, rewards = [], [], [], [], []
    states, internals, terminal = environment.reset(), agent.initial_internals(), False
    while not terminal:
        states_list.append(states)
        internals_list.append(internals)
        actions, internals = agent.act(states=states, internals=internals, independent=True)
        actions_list.append(actions)
        states, terminal, reward = environment.execute(actions=actions)
        terminals.append(terminal)
        rewards.append(reward)
    return dict(
        states=states_list,
        internals=internals_list,
        actions=actions_list,
        terminal=terminals,
        reward=rewards,
    )


def evaluate(agent, environment, episodes=10):
    total = 0.0
    for _ in range(episodes):
        states, terminal = environment.reset(), False
        while not terminal:
            actions = agent.act(states, independent=True, deterministic=True)
            states, terminal, reward = environment.execute(actions)
            total += reward
    return total / episodes


def test_act_experience_update_interface_learns():
    environment = Environment.create(environment="identity", max_episode_timesteps=20)
    agent = Agent.create(agent="ppo", environment=environment, seed=0, learning_rate=3e-3)
    for _ in range(40):
        for _ in range(4):  # 32 steps per update: 8-step updates are too noisy to learn from
            agent.experience(**collect_episode(agent, environment))
        metrics = agent.update()
        assert "losses/policy_loss" in metrics
    assert agent.updates == 40 and agent.episodes == 160 and agent.timesteps == 160 * 8
    assert evaluate(agent, environment) >= 7.0  # of 8; random policy: 2


def test_experience_checks_episodes_and_masks():
    agent = Agent.create(
        agent="ppo",
        states={"type": "float", "shape": (2,)},
        actions={"type": "int", "num_values": 3},
    )
    states = [np.zeros(2), np.ones(2)]
    with pytest.raises(ConfigError, match=r"experience.terminal: \[0, 0\] is invalid"):
        agent.experience(states=states, actions=[0, 1], terminal=[0, 0], reward=[1.0, 1.0])
    with pytest.raises(ConfigError, match="experience: 2 terminals and 1 rewards"):
        agent.experience(states=states, actions=[0, 1], terminal=[0, 1], reward=[1.0])
    with pytest.raises(ConfigError, match=r"experience.actions.action: 1 actions for 2 steps"):
        agent.experience(states=states, actions=[0], terminal=[0, 1], reward=[1.0, 1.0])
    masked = [{"state": s, "action_mask": [True, False, True]} for s in states]
    with pytest.raises(ConfigError, match=r"experience.actions.action: a taken action is masked"):
        agent.experience(states=masked, actions=[0, 1], terminal=[0, 1], reward=[1.0, 1.0])
    with pytest.raises(ProtocolError, match="update: no experience"):
        agent.update()
    agent.experience(states=masked, actions=[0, 2], terminal=[0, 2], reward=[1.0, 0.0])
    assert agent.update() and agent.updates == 1
    agent.act(np.zeros(2))
    with pytest.raises(ProtocolError, match="experience: an act/observe step is unfinished"):
        agent.experience(states=states, actions=[0, 1], terminal=[0, 1], reward=[1.0, 1.0])
    random = Agent.create(agent="random", states={"type": "float"}, actions={"type": "bool"})
    with pytest.raises(ConfigError, match="experience: agent 'random' does not learn"):
        random.experience(states=[0.0], actions=[True], terminal=[1], reward=[1.0])
