"""Action noise: Gaussian and Ornstein-Uhlenbeck statistics, per-slot state, schedules, errors."""

from __future__ import annotations

import numpy as np
import pytest

from forceexp.core.noise import GaussianNoise, OrnsteinUhlenbeckNoise, make_noise
from forceexp.core.schedules import Linear
from forceexp.errors import ConfigError


def test_gaussian_statistics_and_shape():
    noise = make_noise(0.3, (2,), parallel=4, path="agent.noise", seed=0)
    assert isinstance(noise, GaussianNoise)
    draws = np.concatenate([noise.sample(np.arange(4)) for _ in range(5000)])
    assert draws.shape == (20000, 2) and draws.dtype == np.float32
    assert abs(draws.mean()) < 0.01
    assert draws.std() == pytest.approx(0.3, rel=0.02)


def test_gaussian_is_seeded_and_none_means_no_noise():
    first = make_noise({"type": "normal", "std": 1.0}, (), 1, "n", seed=3).sample(np.zeros(5, int))
    again = make_noise({"type": "gaussian", "std": 1.0}, (), 1, "n", seed=3).sample(
        np.zeros(5, int)
    )
    assert first.shape == (5,)
    np.testing.assert_array_equal(first, again)
    assert make_noise(None, (2,), 1, "n") is None


def test_scheduled_std_uses_the_counters():
    spec = {
        "type": "gaussian",
        "std": {"type": "linear", "num_steps": 100, "initial_value": 1.0, "final_value": 0.0},
    }
    noise = make_noise(spec, (1000,), 1, "n", seed=0)
    assert noise.scale == Linear(1.0, 0.0, 100)
    assert noise.sample([0], timesteps=50).std() == pytest.approx(0.5, rel=0.1)
    assert not noise.sample([0], timesteps=100).any()


def test_ornstein_uhlenbeck_is_correlated_stationary_and_resets_to_mu():
    spec = {"type": "ou", "sigma": 0.2, "theta": 0.15, "dt": 1e-2, "mu": 0.0}
    noise = make_noise(spec, (), parallel=256, path="n", seed=0)
    assert isinstance(noise, OrnsteinUhlenbeckNoise)
    slots = np.arange(256)
    for _ in range(3000):  # ~4.5 mean-reversion times: close to the stationary distribution
        noise.sample(slots)
    series = np.stack([noise.sample(slots) for _ in range(200)])  # (T, slots)
    lag1 = np.corrcoef(series[:-1].ravel(), series[1:].ravel())[0, 1]
    assert lag1 > 0.9
    stationary_std = 0.2 * np.sqrt(1e-2 / (1 - (1 - 0.15 * 1e-2) ** 2))  # ~ sigma / sqrt(2 theta)
    assert series.std() == pytest.approx(stationary_std, rel=0.15)
    assert abs(series.mean()) < 0.1
    before = noise.state.copy()
    noise.reset([3])
    assert noise.state[3] == 0.0
    np.testing.assert_array_equal(np.delete(noise.state, 3), np.delete(before, 3))
    noise.reset()
    assert not noise.state.any()


def test_ornstein_uhlenbeck_per_slot_state_shape_and_mu():
    noise = OrnsteinUhlenbeckNoise(sigma=0.0, shape=(2, 3), parallel=2, mu=1.5, seed=0)
    assert noise.state.shape == (2, 2, 3)
    np.testing.assert_array_equal(noise.sample([1]), np.full((1, 2, 3), 1.5, np.float32))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("loud", r"n: 'loud' is invalid; expected None, a number \(Gaussian std\) or a dict"),
        (-0.1, r"n: -0.1 is invalid; expected a number >= 0 or a schedule of numbers >= 0"),
        ({"type": "gauss", "std": 1}, r"n.type: unknown noise 'gauss'; did you mean 'gaussian'\?"),
        ({"type": "ou"}, r"n: .* is invalid; expected a dict with 'sigma'"),
        ({"type": "normal", "std": 1, "sigma": 1}, r"n.sigma: 1 is invalid; expected no such key"),
        ({"type": "ou", "sigma": 1, "theta": 0}, r"n.theta: 0 is invalid; expected a number > 0"),
        ({"type": "ou", "sigma": 1, "dt": "x"}, r"n.dt: 'x' is invalid; expected a number"),
        ({"type": "ou", "sigma": 1, "mu": np.inf}, r"n.mu: inf is invalid; expected a finite"),
        ({"type": "ou", "sigma": {"type": "sawtooth"}}, r"n.sigma.type: unknown schedule type"),
    ],
)
def test_noise_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_noise(spec, (2,), 1, "n")
