import numpy as np
import pytest
import torch

from forceexp.core.distributions import make_head
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec


def test_categorical_matches_torch_and_respects_masks():
    head = make_head("a", 5, TensorSpec("int", (2,), 3))
    features = torch.randn(4, 5)
    mask = torch.tensor([True, False, True]).expand(4, 2, 3)
    dist = head(features, mask)
    ref = torch.distributions.Categorical(
        logits=head.linear(features).view(4, 2, 3).masked_fill(~mask, -1e9)
    )
    actions = dist.sample(deterministic=False)
    assert actions.shape == (4, 2)
    assert (actions != 1).all()
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    assert dist.parameters()["probabilities"][..., 1].max() == 0.0
    samples = torch.stack([dist.sample(False) for _ in range(200)])
    assert (samples != 1).all()


def test_gaussian_matches_torch_and_bounds_actions():
    spec = TensorSpec("float", (2,), min_value=-1.0, max_value=1.0)
    head = make_head("f", 3, spec)
    head.log_std.data.fill_(0.3)
    features = torch.randn(6, 3)
    dist = head(features)
    ref = torch.distributions.Normal(head.linear(features), torch.full((6, 2), 0.3).exp())
    actions = dist.sample(deterministic=False) * 10
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    clipped = head.to_env(actions)
    assert clipped.min() >= -1.0
    assert clipped.max() <= 1.0
    squash = make_head("f", 3, spec, bounded_actions="squash")
    squashed = squash.to_env(torch.tensor([[-50.0, 50.0]]))
    torch.testing.assert_close(squashed, torch.tensor([[-1.0, 1.0]]))
    with pytest.raises(ConfigError, match="bounded_actions: 'tanh' is invalid"):
        make_head("f", 3, spec, bounded_actions="tanh")


def test_bernoulli_matches_torch():
    head = make_head("b", 3, TensorSpec("bool", (4,)))
    features = torch.randn(5, 3)
    dist = head(features)
    ref = torch.distributions.Bernoulli(logits=head.linear(features))
    actions = dist.sample(deterministic=False)
    assert actions.dtype == torch.bool
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions.float()).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))


def test_int_action_without_num_values_is_refused():
    with pytest.raises(ConfigError, match="int actions need num_values"):
        make_head("a", 3, TensorSpec("int", ()))


def test_running_normalizer_tracks_mean_and_var():
    from forceexp.core.normalization import RunningNormalizer

    norm = RunningNormalizer((2,))
    data = np.random.default_rng(0).normal([3.0, -1.0], [2.0, 0.5], size=(5000, 2))
    for chunk in np.array_split(data, 50):
        norm.update(torch.tensor(chunk, dtype=torch.float32))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), atol=1e-3)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-2)
