"""Bugs found migrating Tensorforce programs: constant agent masks, summarizer ``summaries=``."""

import numpy as np
import pytest

from forceexp import Agent
from forceexp.errors import ConfigError
from forceexp.observers.summarizer import Summarizer

STATES = {"type": "float", "shape": (3,)}


def test_constant_agent_respects_action_masks():
    agent = Agent.create(
        agent="constant",
        states=STATES,
        actions={"type": "int", "num_values": 4},
        action_values=1,
    )
    assert agent.act({"state": np.zeros(3), "action_mask": [True] * 4}, independent=True) == 1
    masked = agent.act({"state": np.zeros(3), "action_mask": [False, False, True, True]})
    assert masked == 2  # the constant is disallowed: the first allowed value
    batch = agent.act(
        {"state": np.zeros((2, 3)), "action_mask": [[True, True, False, False]] * 2},
        independent=True,
    )
    assert batch.tolist() == [1, 1]


def test_summarizer_accepts_summaries_next_to_labels(tmp_path):
    summarizer = Summarizer.from_spec(dict(directory=tmp_path, summaries=["reward", "loss"]))
    assert summarizer.labels == {"reward", "loss"}
    same = Summarizer.from_spec(dict(directory=tmp_path, summaries="all", labels="all"))
    assert "reward" in same.labels
    with pytest.raises(ConfigError, match=r"give labels= or summaries= \(its alias\), not both"):
        Summarizer.from_spec(dict(directory=tmp_path, summaries=["reward"], labels=["loss"]))
    with pytest.raises(ConfigError, match="unknown key 'summary'"):
        Summarizer.from_spec(dict(directory=tmp_path, summary=["reward"]))
