"""Start-up: building an agent does not import ``torch._dynamo``; Adam's results are unchanged."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import torch
import forceexp.agents  # seeds the optimizer methods' disable-wrapper cache
from forceexp import Agent
from forceexp.core.lazy_dynamo import CACHE, METHODS


def adam_trace():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(5):
        optimizer.zero_grad()
        net(torch.randn(8, 4)).square().mean().backward()
        for p in net.parameters():  # Adam's update without Optimizer.step (the fast paths)
            p.data.add_(p.grad, alpha=-0.01)
    optimizer.load_state_dict(optimizer.state_dict())
    return [p.detach().clone() for p in net.parameters()]


for agent in ("ppo", "dqn"):
    Agent.create(agent, environment="CartPole-v1").close()
assert "torch._dynamo" not in sys.modules, "building an agent imported torch._dynamo"
before = adam_trace()
assert "torch._dynamo" not in sys.modules
import torch._dynamo

after = adam_trace()  # now through torch's own disable wrappers
assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
for name in METHODS:
    cached = getattr(getattr(torch.optim.Optimizer, name).__wrapped__, CACHE)
    assert cached.__module__.startswith("torch._dynamo"), (name, cached)
print("ok")
"""


def test_agents_build_without_importing_dynamo_and_adam_is_unchanged():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
