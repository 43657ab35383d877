"""VPGAgent: vanilla policy gradient (REINFORCE), with a learned state-value baseline by default.

Every ``rollout_length`` steps per parallel slot (rollouts long enough to hold whole episodes):

    R_t   = sum_k gamma^k r_{t+k}        Monte-Carlo return (GAE with lambda = 1; an episode cut
                                         by the rollout end or a time limit bootstraps V)
    A_t   = R_t - V(s_t)                 (``subtract_baseline=False``: A_t = R_t, plain REINFORCE)
    L     = -mean(A_t * log pi(a_t | s_t)) + value_coef * mean((V(s_t) - R_t)^2)
            - entropy_coef * mean(H[pi(. | s_t)])
    theta <- one Adam step on grad L per rollout

Tensorforce's ``vpg`` estimates returns over whole episodes and updates every ``batch_size``
episodes, with an optional separately optimized baseline; here the baseline shares one Adam
step with the policy (weighted by ``value_coef``) and the update interval is in timesteps.
The update is A2C's (``forceexp.agents.a2c``), so plain MLPs on the CPU use the fast path.
"""

from __future__ import annotations

from functools import partialmethod

from forceexp.agents.a2c import A2CAgent


class VPGAgent(A2CAgent):
    """REINFORCE with a value baseline: A2C's update with Monte-Carlo returns and Adam.

    Arguments are ``A2CAgent``'s; the defaults differ (``conf/agent/vpg.yaml``): rollout
    length 256, Adam at 1e-3, gamma 0.99, lambda 1, advantages normalized, no gradient clip.
    """

    name = "vpg"

    __init__ = partialmethod(
        A2CAgent.__init__,
        rollout_length=256,
        learning_rate=1e-3,
        optimizer="adam",
        gae_lambda=1.0,
        normalize_advantages=True,
        max_grad_norm=None,
    )
