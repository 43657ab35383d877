"""evaluate(agent, env, episodes): mean/std return of independent (deterministic) episodes."""

from __future__ import annotations

import numpy as np

from forceexp.agents.agent import Agent
from forceexp.environments import EnvironmentWrapper, VectorizedEnvironment
from forceexp.errors import ConfigError


def evaluate(
    agent: Agent,
    environment: EnvironmentWrapper | VectorizedEnvironment,
    num_episodes: int = 20,
    deterministic: bool = True,
    seed: int | None = None,
) -> dict[str, float]:
    """Play ``num_episodes`` episodes with independent acts (nothing is stored or learned).

    A vectorised environment plays them on its sub-environments together
    (``forceexp.execution.vectorized.evaluate_vectorized``).

    Returns:
        ``{'return_mean', 'return_std', 'length_mean', 'episodes'}``.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ConfigError(f"num_episodes: {num_episodes!r} is invalid; expected an int >= 1")
    if isinstance(environment, VectorizedEnvironment):
        from forceexp.execution.vectorized import evaluate_vectorized

        return evaluate_vectorized(agent, environment, num_episodes, deterministic, seed)
    returns, lengths = [], []
    internals = agent.initial_internals()
    for episode in range(num_episodes):
        states = environment.reset(seed=None if seed is None else seed + episode)
        total, steps, terminal = 0.0, 0, 0
        while not terminal:
            actions, internals = agent.act(
                states, internals=internals, independent=True, deterministic=deterministic
            )
            states, terminal, reward = environment.execute(actions)
            total += reward
            steps += 1
        internals = agent.initial_internals()
        returns.append(total)
        lengths.append(steps)
    return {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "episodes": float(num_episodes),
    }
