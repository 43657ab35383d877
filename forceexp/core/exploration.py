"""Exploration by random actions: uniform (mask-aware) samples and epsilon-greedy mixing."""

from __future__ import annotations

import torch

from forceexp.specs import Specs

Tensors = dict[str, torch.Tensor]


def uniform_actions(
    specs: Specs,
    masks: Tensors,
    size: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensors:
    """Uniformly random actions ``{name: (size, *shape)}``.

    Int actions draw only values their masks allow; bool actions are fair coins; bounded float
    actions are uniform within bounds, unbounded ones standard normal.
    """
    out = {}
    for name, spec in specs.items:
        shape = (size, *spec.shape)
        if spec.type == "int":
            mask = masks.get(name)
            if mask is None:
                mask = torch.ones((*shape, spec.num_values), dtype=torch.bool, device=device)
            noise = torch.rand(mask.shape, generator=generator, device=device)
            out[name] = noise.masked_fill(~mask, -1.0).argmax(-1)
        elif spec.type == "bool":
            out[name] = torch.rand(shape, generator=generator, device=device) < 0.5
        elif spec.is_bounded:
            low = torch.as_tensor(spec.min_value, dtype=torch.float32, device=device)
            high = torch.as_tensor(spec.max_value, dtype=torch.float32, device=device)
            out[name] = low + torch.rand(shape, generator=generator, device=device) * (high - low)
        else:
            out[name] = torch.randn(shape, generator=generator, device=device)
    return out


def epsilon_greedy(
    greedy: Tensors, random: Tensors, epsilon: float, generator: torch.Generator | None
) -> Tensors:
    """Per batch row, the random action with probability ``epsilon``, else the greedy one."""
    if epsilon <= 0.0:
        return greedy
    first = next(iter(greedy.values()))
    explore = torch.rand(first.shape[0], generator=generator, device=first.device) < epsilon
    return {
        name: torch.where(explore.view(-1, *([1] * (a.dim() - 1))), random[name], a)
        for name, a in greedy.items()
    }
