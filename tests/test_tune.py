"""Pruned tuning (forceexp.tune): option checks, a study that prunes, parallel workers."""

from __future__ import annotations

import json

import pytest

from forceexp.errors import ConfigError
from forceexp.tune import check_options, tune

PARAMS = {"agent.learning_rate": {"type": "categorical", "choices": [3e-3, 1e-7]}}


@pytest.mark.parametrize(
    ("options", "frequency", "pattern"),
    [
        ({"n_trials": 0, "params": PARAMS}, 10, r"tune.n_trials: 0 is invalid"),
        ({"n_trials": 2, "n_jobs": 0, "params": PARAMS}, 10, r"tune.n_jobs: 0 is invalid"),
        ({"n_trials": 2, "direction": "up", "params": PARAMS}, 10, r"tune.direction: 'up'"),
        ({"n_trials": 2, "sampler": "grid", "params": PARAMS}, 10, r"tune.sampler: 'grid'"),
        ({"n_trials": 2, "pruner": {}, "params": PARAMS}, None, r"evaluation.frequency: None"),
        ({"n_trials": 2, "params": {}}, 10, r"tune.params: \{\} is invalid"),
        ({"n_trials": 2, "params": {"a": {"type": "x"}}}, 10, r"tune.params.a.type: 'x'"),
        ({"n_trials": 2, "params": {"a": {"type": "float"}}}, 10, r"keys \['low', 'high'\]"),
    ],
)
def test_bad_tune_options_are_named(options, frequency, pattern):
    with pytest.raises(ConfigError, match=pattern):
        check_options(options, frequency)


def _cfg(compose_cfg, *extra):
    return compose_cfg(
        "hparams_search=ppo_pruned",
        "env=identity",
        "runner.num_timesteps=3000",
        "runner.num_parallel=2",
        "evaluation.frequency=500",
        "evaluation.num_episodes=3",
        "agent.rollout_length=32",
        "agent.minibatch_size=64",
        "agent.epochs=4",
        "tune.n_trials=4",
        "tune.sampler=random",
        "tune.seed=6",  # trials draw 3e-3, 3e-3, 1e-7, 3e-3 (Optuna 2.10 and 5.0)
        "tune.pruner.n_startup_trials=1",
        "~tune.params",
        "+tune.params={agent.learning_rate: {type: categorical, choices: [3.0e-3, 1.0e-7]}}",
        *extra,
    )


def test_a_study_prunes_trials_that_fall_behind(compose_cfg, tmp_path):
    summary = tune(_cfg(compose_cfg))
    assert json.loads((tmp_path / "tune.json").read_text()) == summary
    trials = summary["trials"]
    assert summary["best_params"] == {"agent.learning_rate": 3e-3}
    assert summary["best_value"] >= 7.0  # identity: 8 is the best return
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned and all(t["params"]["agent.learning_rate"] == 1e-7 for t in pruned)
    assert all(t["timesteps"] < 3000 for t in pruned)
    assert summary["total_timesteps"] == sum(t["timesteps"] for t in trials)
    assert (tmp_path / "trial_0" / "results.json").is_file()


def test_trials_on_several_seeds_report_their_mean(compose_cfg, tmp_path):
    summary = tune(_cfg(compose_cfg, "tune.n_trials=2", "tune.seeds=[3,4]", "tune.pruner=null"))
    for trial in summary["trials"]:
        runs = [tmp_path / f"trial_{trial['number']}" / f"seed_{s}" for s in (3, 4)]
        results = [json.loads((run / "results.json").read_text()) for run in runs]
        assert trial["value"] == pytest.approx(sum(r["eval_return_mean"] for r in results) / 2)
        assert trial["timesteps"] == sum(r["timesteps"] for r in results)
    with pytest.raises(ConfigError, match=r"tune.seeds: \[\] is invalid; expected null"):
        check_options({"n_trials": 1, "seeds": [], "params": PARAMS}, 10)


@pytest.mark.slow
def test_parallel_trials_share_a_journal(compose_cfg, tmp_path):
    optuna = pytest.importorskip("optuna")
    if not hasattr(optuna.storages, "JournalStorage"):
        with pytest.raises(ConfigError, match=r"tune.n_jobs: '> 1' is invalid; expected Optuna"):
            tune(_cfg(compose_cfg, "tune.n_jobs=2"))
        return
    summary = tune(_cfg(compose_cfg, "tune.n_jobs=2"))
    assert summary["trials_complete"] + summary["trials_pruned"] == 4
    assert (tmp_path / "optuna.journal").is_file()
