"""forceexp against Stable-Baselines3 at identical hyperparameters, side by side in one process.

``--algo ppo`` (default): PPO on CartPole-v1. Runs alternate per seed: ours, SB3, then (unless
``--skip-default``) our default ``python train.py agent=ppo env=cartpole`` config composed with
Hydra (its own budget and tuning, e.g. ``conf/tuning/ppo_cartpole.yaml``; ``--timesteps`` does
not apply to it). All three are timed by ``ReturnThreshold`` from the start of training.

``--algo dqn`` (DQN on CartPole-v1, 50k steps) and ``--algo sac`` (SAC on Pendulum-v1, 20k
steps): ours is exactly ``python train.py agent=<algo> env=<env>`` (the shipped RL-Zoo tuning,
composed with Hydra and run in-process), SB3's the same RL-Zoo hyperparameters in its names;
``--timesteps`` overrides both budgets. Where the tuning evaluates during training
(``conf/tuning/dqn_cartpole.yaml``: 10 greedy episodes every 5,000 steps, finishing with the
best-evaluated weights), SB3 does the same with its ``EvalCallback`` (and loads its best model),
so both clocks include the same evaluations; ``--no-eval`` turns them off on both sides.

Prints one JSON line per figure per framework (median over seeds, per-seed values in
``per_seed``; ``null`` where a run never reached a rolling-100 training return of 475), then the
ratios ours/SB3 (of the medians, and per seed). Both sides run with ``--threads`` torch threads
(default 1, our ``torch_threads='auto'``). Needs the ``[bench]`` extra.

Usage: python benchmarks/compare_sb3.py [--algo ppo|dqn|sac] [--seeds 3] [--timesteps N]
    [--skip-default] [--no-eval] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from forceexp import Runner
from forceexp.execution.milestones import ReturnThreshold

ENV = "CartPole-v1"
SOLVED, WINDOW, EVAL_EPISODES, NUM_ENVS = 475.0, 100, 20, 8
CONF = Path(__file__).resolve().parents[1] / "conf"
# RL-Zoo CartPole-v1 PPO (lr and clip decay linearly to 0 over the run), in each one's names.
OURS = {
    "rollout_length": 32,
    "minibatch_size": 256,
    "epochs": 20,
    "learning_rate": 1e-3,
    "lr_schedule": "linear",
    "discount": 0.98,
    "gae_lambda": 0.8,
    "clip_ratio": 0.2,
    "clip_schedule": "linear",
    "entropy_coef": 0.0,
    "value_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_advantages": True,
    "network": {"type": "auto", "size": 64, "depth": 2, "activation": "tanh"},
    "baseline": {"type": "auto", "size": 64, "depth": 2, "activation": "tanh"},
}
SB3 = {
    "n_steps": 32,
    "batch_size": 256,
    "n_epochs": 20,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_advantage": True,
    "policy_kwargs": {
        "net_arch": {"pi": [64, 64], "vf": [64, 64]},
        "activation_fn": torch.nn.Tanh,
        "ortho_init": True,
    },
}
UNITS = {
    "seconds_to_475": "s",
    "timesteps_to_475": "steps",
    "wall_seconds": "s",
    "steps_per_second": "steps/s",
    "eval_return_mean": "return",
}
RATIOS = ("steps_per_second", "seconds_to_475", "timesteps_to_475")


def figures(
    solve: ReturnThreshold, wall: float, timesteps: int, eval_return: float
) -> dict[str, Any]:
    """Per-run figures (``wall`` in seconds, ``timesteps`` taken in all)."""
    return {
        "seconds_to_475": solve.seconds,
        "timesteps_to_475": solve.timesteps,
        "wall_seconds": wall,
        "steps_per_second": timesteps / wall,
        "eval_return_mean": eval_return,
    }


def run_ours(seed: int, timesteps: int) -> dict[str, Any]:
    """Train our PPO with the shared hyperparameters; figures of the run."""
    agent = {"agent": "ppo", "seed": seed, "device": "cpu", "schedule_timesteps": timesteps}
    agent["torch_threads"] = THREADS["count"]
    runner = Runner(agent={**agent, **OURS}, environment=ENV, num_parallel=NUM_ENVS, seed=seed)
    solve = ReturnThreshold(SOLVED, WINDOW)  # its clock starts now
    runner.run(num_timesteps=timesteps, callback=solve, use_tqdm=False)
    wall = time.perf_counter() - solve.start
    evaluation = runner.evaluate(num_episodes=EVAL_EPISODES)
    runner.close()
    return figures(solve, wall, runner.timesteps, evaluation["return_mean"])


class EpisodeReturns(BaseCallback):
    """Hands SB3's Monitor episode returns (``infos[i]['episode']``) to a ``ReturnThreshold``.

    The callback stands in for our runner: ``episode_returns`` and ``timesteps`` are all that
    ``ReturnThreshold`` reads, so both frameworks are timed by the same code.
    """

    def __init__(self, solve: ReturnThreshold) -> None:
        super().__init__()
        self.solve = solve
        self.episode_returns: list[float] = []

    @property
    def timesteps(self) -> int:
        """Steps taken over all environments (SB3's ``num_timesteps``)."""
        return self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episode_returns.append(float(info["episode"]["r"]))
                self.solve(self, 0)
        return True


def linear(initial: float) -> Callable[[float], float]:
    """RL-Zoo's ``lin_<initial>``: decays to 0 with SB3's progress_remaining (1 -> 0)."""
    return lambda progress_remaining: progress_remaining * initial


def run_sb3(seed: int, timesteps: int) -> dict[str, Any]:
    """Train SB3 PPO (DummyVecEnv of 8 Monitor-wrapped envs) with the shared hyperparameters."""
    env = make_vec_env(ENV, n_envs=NUM_ENVS, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
        **SB3,
    )
    solve = ReturnThreshold(SOLVED, WINDOW)  # its clock starts now
    model.learn(total_timesteps=timesteps, callback=EpisodeReturns(solve))
    wall = time.perf_counter() - solve.start
    eval_env = make_vec_env(ENV, n_envs=1, seed=seed + 10_000)
    eval_return, _ = evaluate_policy(model, eval_env, EVAL_EPISODES, deterministic=True)
    env.close()
    eval_env.close()
    return figures(solve, wall, model.num_timesteps, float(eval_return))


def run_config(seed: int, *overrides: str) -> dict[str, Any]:
    """Our ``train.py`` with ``overrides`` (composed from conf/, run in-process).

    Every figure is ``experiment.train``'s own (its ``results.json``): the same
    ``ReturnThreshold`` clock, started when training starts.
    """
    from hydra import compose, initialize_config_dir

    from forceexp.experiment import train

    with tempfile.TemporaryDirectory() as output_dir:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    *overrides,
                    f"seed={seed}",
                    f"torch_threads={THREADS['count']}",
                    f"solve_return={SOLVED}",
                    f"paths.output_dir={output_dir}",
                    "runner.use_tqdm=false",
                ],
            )
        results = train(cfg)
    return {
        "seconds_to_475": results["solved_seconds"],
        "timesteps_to_475": results["solved_timesteps"],
        "wall_seconds": results["wall_seconds"],
        "steps_per_second": results["steps_per_second"],
        "eval_return_mean": results["eval_return_mean"],
    }


def run_default(seed: int) -> dict[str, Any]:
    """Our default ``train.py agent=ppo env=cartpole``."""
    return run_config(seed, "agent=ppo", "env=cartpole")


#: RL-Zoo DQN CartPole-v1 and SAC Pendulum-v1 in SB3's names (ours: conf/tuning/<algo>_<env>).
OFF_POLICY = {
    "dqn": (
        "cartpole",
        "CartPole-v1",
        50_000,
        DQN,
        {
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    ),
    "sac": ("pendulum", "Pendulum-v1", 20_000, SAC, {"learning_rate": 1e-3}),
}


def evaluation(algo: str) -> dict[str, Any] | None:
    """The shipped tuning's evaluation during training (``frequency``, ...), or None if off."""
    tuning = CONF / "tuning" / f"{algo}_{OFF_POLICY[algo][0]}.yaml"
    found = OmegaConf.to_container(OmegaConf.load(tuning)).get("evaluation")  # type: ignore[union-attr]
    return found if found and found.get("frequency") else None


def run_off_policy_ours(algo: str, seed: int, timesteps: int | None, evaluate: bool) -> dict:
    """Our shipped ``train.py agent=<algo> env=<env>`` (budget ``timesteps`` if given)."""
    env, *_ = OFF_POLICY[algo]
    budget = [] if timesteps is None else [f"runner.num_timesteps={timesteps}"]
    no_eval = [] if evaluate else ["evaluation.frequency=null", "evaluation.keep_best=false"]
    return run_config(seed, f"agent={algo}", f"env={env}", *budget, *no_eval)


def run_off_policy_sb3(algo: str, seed: int, timesteps: int | None, evaluate: bool) -> dict:
    """SB3's ``algo`` with the RL-Zoo hyperparameters on one environment.

    With ``evaluate`` and an evaluation in our tuning, an ``EvalCallback`` runs the same
    evaluations (greedy, same frequency and episodes) inside the timed run, and the final
    evaluation uses its best model when ours keeps the best weights (SB3 keeps the first of
    equal scores, ours the latest).
    """
    _, level, budget, cls, kwargs = OFF_POLICY[algo]
    env = make_vec_env(level, n_envs=1, seed=seed)
    model = cls("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
    spec = evaluation(algo) if evaluate else None
    best = tempfile.TemporaryDirectory()
    solve = ReturnThreshold(SOLVED, WINDOW)  # its clock starts now
    callbacks: list[BaseCallback] = [EpisodeReturns(solve)]
    if spec is not None:
        evaluator = EvalCallback(
            make_vec_env(level, n_envs=1, seed=seed + 20_000),
            n_eval_episodes=spec.get("num_episodes", 10),
            eval_freq=spec["frequency"],
            best_model_save_path=best.name if spec.get("keep_best") else None,
            deterministic=True,
            verbose=0,  # stdout carries only the JSON lines
        )
        callbacks.append(evaluator)
    model.learn(total_timesteps=timesteps or budget, callback=CallbackList(callbacks))
    wall = time.perf_counter() - solve.start
    taken = model.num_timesteps  # the best model loaded below has its own count
    if spec is not None and spec.get("keep_best") and Path(best.name, "best_model.zip").exists():
        model = cls.load(Path(best.name, "best_model.zip"), device="cpu")
    best.cleanup()
    eval_env = make_vec_env(level, n_envs=1, seed=seed + 10_000)
    eval_return, _ = evaluate_policy(model, eval_env, EVAL_EPISODES, deterministic=True)
    env.close()
    eval_env.close()
    return figures(solve, wall, taken, float(eval_return))


def median(values: list[Any]) -> float | None:
    """Median with unsolved runs (None) counted as never; None when most runs never solved."""
    value = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(value) else value


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


ALGO = {"name": "ppo"}  # set by main(); every line names the algorithm
THREADS = {"count": 1}  # torch threads of both sides, set by main()


def emit(framework: str, figure: str, value: float | None, unit: str, **extra: Any) -> None:
    line = {
        "benchmark": "compare_sb3",
        "algo": ALGO["name"],
        "framework": framework,
        "figure": figure,
        "value": rounded(value),
        "unit": unit,
        **extra,
    }
    print(json.dumps(line), flush=True)


def report(framework: str, runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Print each figure's median (and per-seed values); return the medians."""
    medians = {}
    for figure, unit in UNITS.items():
        values = [run[figure] for run in runs]
        medians[figure] = median(values)
        emit(framework, figure, medians[figure], unit, per_seed=[rounded(v) for v in values])
    return medians


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours / theirs


def report_ratio(
    framework: str, figure: str, runs: dict[str, list[dict[str, Any]]], medians: dict[str, Any]
) -> None:
    """Print ``framework``/SB3 for ``figure``: ratio of the medians, and per seed (paired runs).

    The per-seed ratios compare runs made next to each other, so they are less sensitive than
    the medians to load that changes during the benchmark on a shared machine.
    """
    paired = [
        ratio(a[figure], b[figure]) for a, b in zip(runs[framework], runs["sb3"], strict=True)
    ]
    value = ratio(medians[framework][figure], medians["sb3"][figure])
    emit(f"{framework}/sb3", f"{figure}_ratio", value, "x", per_seed=[rounded(v) for v in paired])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["ppo", *OFF_POLICY], default="ppo")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per framework")
    parser.add_argument(
        "--timesteps", type=int, default=None, help="steps per run (default: the RL-Zoo budget)"
    )
    parser.add_argument(
        "--skip-default", action="store_true", help="ppo: skip our default train.py config"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument(
        "--no-eval", action="store_true", help="dqn/sac: no evaluations during training (both)"
    )
    args = parser.parse_args()
    ALGO["name"] = args.algo
    THREADS["count"] = args.threads
    torch.set_num_threads(args.threads)  # SB3's; ours sets the same through torch_threads
    runs: dict[str, list[dict[str, Any]]] = {"forceexp": [], "sb3": [], "forceexp-default": []}
    for seed in range(args.seeds):
        for name, job in _jobs(args, seed):
            runs[name].append(job())
            print(f"{args.algo} {name} seed {seed}: {runs[name][-1]}", file=sys.stderr, flush=True)
    medians = {name: report(name, found) for name, found in runs.items() if found}
    for figure in RATIOS:
        report_ratio("forceexp", figure, runs, medians)
    if "forceexp-default" in medians:
        report_ratio("forceexp-default", "seconds_to_475", runs, medians)


def _jobs(args: argparse.Namespace, seed: int) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The runs of one seed, in order: ours, SB3 (and for PPO our default config)."""
    algo, evaluate = args.algo, not args.no_eval
    if algo != "ppo":
        return [
            ("forceexp", lambda: run_off_policy_ours(algo, seed, args.timesteps, evaluate)),
            ("sb3", lambda: run_off_policy_sb3(algo, seed, args.timesteps, evaluate)),
        ]
    timesteps = args.timesteps or 100_000
    jobs = [("forceexp", lambda: run_ours(seed, timesteps))]
    jobs.append(("sb3", lambda: run_sb3(seed, timesteps)))
    if not args.skip_default:
        jobs.append(("forceexp-default", lambda: run_default(seed)))
    return jobs


if __name__ == "__main__":
    main()
