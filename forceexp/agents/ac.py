"""ACAgent: Tensorforce's actor-critic, a policy gradient with one-step TD advantages.

Every ``rollout_length`` steps per parallel slot:

    A_t   = r_t + gamma * V(s_{t+1}) * (1 - terminal_t) - V(s_t)     (GAE with lambda = 0)
    R_t   = A_t + V(s_t)                                             the critic's TD target
    L     = -mean(A_t * log pi(a_t | s_t)) + value_coef * mean((V(s_t) - R_t)^2)
            - entropy_coef * mean(H[pi(. | s_t)])
    theta <- one Adam step on grad L per rollout

Tensorforce's ``ac`` uses ``horizon=1`` (the one-step target) and a separate critic network
(``critic``, our ``baseline``) with its own optimizer; here one Adam step covers both, with the
critic's loss weighted by ``value_coef``. The update is A2C's (``forceexp.agents.a2c``).
"""

from __future__ import annotations

from functools import partialmethod

from forceexp.agents.a2c import A2CAgent


class ACAgent(A2CAgent):
    """Actor-critic with one-step TD advantages: A2C's update with lambda 0 and Adam.

    Arguments are ``A2CAgent``'s; the defaults differ (``conf/agent/ac.yaml``): rollout
    length 10 (Tensorforce's documented ``batch_size`` example), Adam at 1e-3, gamma 0.99,
    lambda 0.
    """

    name = "ac"

    __init__ = partialmethod(
        A2CAgent.__init__,
        rollout_length=10,
        learning_rate=1e-3,
        optimizer="adam",
        gae_lambda=0.0,
    )
