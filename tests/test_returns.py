import numpy as np
import torch

from forceexp.core.returns import discounted_returns, gae


def reference_gae(rewards, values, next_values, terminals, lengths, gamma, lam):
    """Plain per-slot loop, written independently of the vectorized version."""
    steps, slots = rewards.shape
    out = np.zeros((steps, slots))
    for n in range(slots):
        running = 0.0
        for t in reversed(range(lengths[n])):
            boot = 0.0 if terminals[t, n] == 1 else next_values[t, n]
            delta = rewards[t, n] + gamma * boot - values[t, n]
            continues = terminals[t, n] == 0 and t + 1 < lengths[n]
            running = delta + (gamma * lam * running if continues else 0.0)
            out[t, n] = running
    return out


def test_gae_matches_reference_with_truncation_and_ragged_lengths():
    rng = np.random.default_rng(0)
    steps, slots = 7, 3
    rewards = rng.normal(size=(steps, slots))
    values = rng.normal(size=(steps, slots))
    next_values = rng.normal(size=(steps, slots))
    terminals = np.zeros((steps, slots), dtype=np.int64)
    terminals[2, 0] = 1  # true end: no bootstrap
    terminals[4, 1] = 2  # time limit: bootstrap from next_values
    lengths = np.array([7, 6, 3])
    expected = reference_gae(rewards, values, next_values, terminals, lengths, 0.98, 0.8)
    got = gae(
        *(torch.tensor(x, dtype=torch.float64) for x in (rewards, values, next_values)),
        torch.tensor(terminals),
        0.98,
        0.8,
        torch.tensor(lengths),
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_hand_computed_truncation_bootstraps_but_termination_does_not():
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.5], [0.5]])
    next_values = torch.tensor([[0.5], [2.0]])
    truncated = gae(rewards, values, next_values, torch.tensor([[0], [2]]), 0.9, 1.0)
    # step 1: 1 + 0.9 * 2.0 - 0.5 = 2.3; step 0: (1 + 0.45 - 0.5) + 0.9 * 2.3 = 3.02
    np.testing.assert_allclose(truncated[:, 0].numpy(), [3.02, 2.3], rtol=1e-6)
    terminated = gae(rewards, values, next_values, torch.tensor([[0], [1]]), 0.9, 1.0)
    np.testing.assert_allclose(terminated[:, 0].numpy(), [0.95 + 0.9 * 0.5, 0.5], rtol=1e-6)


def test_discounted_returns_split_at_terminals():
    returns = discounted_returns(torch.ones(4), torch.tensor([0, 1, 0, 2]), 0.5)
    np.testing.assert_allclose(returns.numpy(), [1.5, 1.0, 1.5, 1.0])
