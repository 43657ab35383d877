"""Ray: environments as actors and PPO rollout workers, on a local instance and a two-node cluster.

Every Ray process binds to 127.0.0.1 only. The variables below are read when ``ray`` is
imported, so they are set first. The two-node cluster is started by the test itself (two
``ray start`` processes, each in its own process group) and torn down by killing exactly those
process groups (plain ``ray stop`` would stop every Ray process of the user).
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1 as given
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")  # the test cluster's nodes and driver share a token

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from forceexp import Agent, Environment, Runner  # noqa: E402
from forceexp.environments.remote import RemoteEnvironmentError  # noqa: E402
from forceexp.environments.testing import (  # noqa: E402
    HangingEnvironment,
    IdentityEnvironment,
    TargetEnvironment,
)
from forceexp.errors import ConfigError  # noqa: E402
from forceexp.execution.distributed import DistributedRunner  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
PPO = {"agent": "ppo", "rollout_length": 16, "minibatch_size": 64, "epochs": 2, "seed": 3}
# A worker node joins through `ray start --address`, which refuses to run with the variable above
# set to 0 and otherwise rewrites --node-ip-address 127.0.0.1 to the host's address; this runs
# the same CLI with that rewrite turned off, so the node stays on loopback.
LOOPBACK_WORKER = (
    "import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


def _agent(parallel: int) -> Agent:
    return Agent.create(PPO, environment="CartPole-v1", parallel_interactions=parallel)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance (2 CPUs, no dashboard) for this module's local tests."""
    from forceexp.environments.ray_remote import init_ray

    yield init_ray(num_cpus=2)
    ray.shutdown()


def test_environments_as_actors_on_a_local_instance(local_ray):
    runner = Runner("ppo", "CartPole-v1", num_parallel=2, remote="ray", seed=0)
    try:
        assert all(env.node.startswith("127.0.0.1") for env in runner.environments)
        runner.run(num_episodes=4, batch_agent_calls=True, use_tqdm=False)
        assert runner.episodes >= 4
        runner.run(num_episodes=2, use_tqdm=False)  # unbatched: served as answers arrive
        assert runner.episodes >= 2 and runner.timesteps > 0
    finally:
        runner.close()
    remote = Environment.create("CartPole-v1", remote="ray")
    local = Environment.create("CartPole-v1")
    try:
        np.testing.assert_array_equal(remote.reset(seed=7), local.reset(seed=7))
        state, terminal, reward = remote.execute(np.int64(1))
        assert state.flags.writeable and (terminal, reward) == local.execute(np.int64(1))[1:]
    finally:
        remote.close()
        local.close()


def _wait_until_dead(actor: object, seconds: float = 30.0) -> None:
    """Return once Ray reports ``actor`` dead (after ``ray.kill``), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{actor} still alive {seconds} s after ray.kill")


def test_failures_name_the_environment_and_node(local_ray):
    env = Environment.create("CartPole-v1", remote="ray")
    env.reset(seed=0)
    with pytest.raises(RemoteEnvironmentError, match=r"environments\[0\] \(Ray actor on node "):
        env.execute(np.int64(5))  # not an action of CartPole: the environment raises
    ray.kill(env.actor)
    _wait_until_dead(env.actor)  # ray.kill is asynchronous: a step could still land before it
    with pytest.raises(RemoteEnvironmentError, match=r"environments\[0\].*actor died"):
        env.execute(np.int64(0))
    env.close()


def test_unplaceable_and_hung_actors_are_reported(local_ray):
    from forceexp.environments.ray_remote import RayEnvironment, actor_options

    nowhere = {"resources": {"nowhere": 1}}
    with pytest.raises(RemoteEnvironmentError, match=r"environments\[0\].*within 2 s \(not placed"):
        RayEnvironment("CartPole-v1", options=nowhere, start_timeout=2)
    with pytest.raises(RemoteEnvironmentError, match=r"workers\[0\]: did not start within 2 s"):
        DistributedRunner(_agent(1), "CartPole-v1", 1, 1, worker_options=nowhere, timeout=2)
    hangs = {"environment": HangingEnvironment, "hang_at": 1}
    for batched, match in ((True, "no answer to 'execute' within 2 s"), (None, "within 2 s")):
        runner = Runner("random", hangs, num_parallel=2, remote="ray", step_timeout=2)
        with pytest.raises(RemoteEnvironmentError, match=match):  # every actor is stopped
            runner.run(num_episodes=50, batch_agent_calls=batched, use_tqdm=False)
    with pytest.raises(ConfigError, match=r"ray_options: .* or a list of 3 dicts"):
        actor_options([{}], 3)


def test_one_worker_makes_exactly_the_local_updates(local_ray):
    local = Runner(_agent(4), "CartPole-v1", num_parallel=4, seed=5)
    local.run(num_timesteps=16 * 4 * 3, use_tqdm=False)
    distributed = DistributedRunner(_agent(1), "CartPole-v1", 1, 4, seed=5)
    try:
        distributed.run(num_timesteps=16 * 4 * 3, use_tqdm=False)
        assert distributed.updates == local.updates == 3
        # the local run also ends its running episodes at the budget (truncated); ours go on
        assert set(distributed.episode_returns) <= set(local.episode_returns)
        ours, theirs = distributed.agent.policy.state_dict(), local.agent.policy.state_dict()
        assert all(bool((ours[k] == theirs[k]).all()) for k in theirs)
        with pytest.raises(ConfigError, match="give num_episodes and/or num_timesteps"):
            distributed.run()
    finally:
        distributed.close()
        local.close()


def test_train_with_runner_ray(local_ray, compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg("runner=ray", "runner.num_workers=2", "runner.envs_per_worker=2")
    results = train(cfg)  # 256 steps: 2 rollouts of 32 steps x 4 environments
    assert results["timesteps"] == 256 and results["updates"] == 2
    assert results["eval_episodes"] == 2


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"agent": "random"}, r"agent: 'random' is invalid; expected 'ppo'"),
        ({"agent": "ppo", "normalize_states": True}, "normalize_states are not supported"),
        ({"agent": "dqn"}, r"parallel_interactions: 1 is invalid; expected 8 \(num_workers"),
    ],
)
def test_runner_ray_refuses_agents_it_cannot_copy(spec, match):
    agent = Agent.create(spec, environment="CartPole-v1")
    with pytest.raises(ConfigError, match=match):
        DistributedRunner(agent, "CartPole-v1")


DQN_FAST = {  # tests/test_dqn.py's identity settings
    "agent": "dqn",
    "seed": 0,
    "network": {"type": "auto", "size": 64, "depth": 1, "activation": "relu"},
    "memory": 5000,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "learning_starts": 200,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "discount": 0.5,
    "exploration": {"type": "linear", "num_steps": 1500, "initial_value": 1.0, "final_value": 0.02},
}


def test_off_policy_workers_keep_slots_apart_and_survive_a_kill(local_ray):
    """Every CartPole episode is cut at 5 steps (truncated), so per episode the 3-step memory
    holds three transitions (1 + .9 + .81, discount .729), one (1.9, .81) and one (1, .9), all
    ending in the episode's true final state: a mixed-up slot would break this pattern."""
    spec = {"agent": "dqn", "seed": 1, "n_step": 3, "discount": 0.9, "learning_starts": 10_000}
    agent = Agent.create(spec, environment="CartPole-v1", parallel_interactions=4)
    runner = DistributedRunner(
        agent, "CartPole-v1", 2, 2, max_episode_timesteps=5, seed=0, steps_per_round=7
    )
    try:
        runner.run(num_timesteps=200, use_tqdm=False)
        assert runner.timesteps == agent.timesteps >= 200 and runner.episodes >= 36
        memory = agent.memory
        size = len(memory)
        assert agent.timesteps - 2 * 4 <= size <= agent.timesteps  # <= n - 1 pending per slot
        discounts = memory.storage["discounts"][:size].astype(np.float64).round(4)
        rewards = memory.storage["rewards"][:size]
        nexts = memory.storage["next_states/state"][:size]
        for discount, reward in ((0.729, 2.71), (0.81, 1.9), (0.9, 1.0)):
            np.testing.assert_allclose(rewards[discounts == discount], reward, rtol=1e-5)
        assert set(discounts.tolist()) == {0.729, 0.81, 0.9}  # no step was terminated
        assert (discounts == 0.81).sum() == (discounts == 0.9).sum() == runner.episodes
        finals = {row.tobytes() for row in nexts[discounts == 0.9]}
        assert finals == {row.tobytes() for row in nexts[discounts == 0.81]}
        assert finals <= {row.tobytes() for row in nexts[discounts == 0.729]}
        ray.kill(runner.workers[1])
        runner.run(num_timesteps=100, use_tqdm=False)  # worker 1 replaced, windows cleared
        assert runner.timesteps >= 100 and runner._restarts_left == 1
        assert runner.nodes[1].startswith("127.0.0.1")
    finally:
        runner.close()


def test_off_policy_workers_run_the_preprocessing_pipelines_once(local_ray):
    """Workers stack their own slots' frames and negate rewards once; the learner stores them."""
    spec = {"agent": "dqn", "seed": 1, "learning_starts": 10_000}
    pipelines = {
        "state_preprocessing": {"type": "sequence", "length": 2},
        "reward_processing": {"type": "function", "function": "torch.neg"},
    }
    agent = Agent.create(spec, environment="CartPole-v1", parallel_interactions=4, **pipelines)
    runner = DistributedRunner(
        agent, "CartPole-v1", 2, 2, max_episode_timesteps=5, seed=0, steps_per_round=7
    )
    try:
        runner.run(num_timesteps=100, use_tqdm=False)
        size = len(agent.memory)
        states = agent.memory.storage["states/state"][:size]
        nexts = agent.memory.storage["next_states/state"][:size]
        assert states.shape[1] == 8 and size >= 80
        np.testing.assert_array_equal(nexts[:, :4], states[:, 4:])  # each slot's own history
        assert set(agent.memory.storage["rewards"][:size].tolist()) == {-1.0}
    finally:
        runner.close()


def test_recurrent_dqn_workers_send_their_slots_internals(local_ray):
    """Each worker environment's slot keeps its LSTM internals (zero at its episode starts);
    the learner's memory gets them with every transition."""
    network = {"type": "auto", "size": 8, "depth": 1, "rnn": 1}
    spec = {"agent": "dqn", "seed": 1, "learning_starts": 50, "batch_size": 8, "network": network}
    agent = Agent.create(spec, environment="CartPole-v1", parallel_interactions=2)
    runner = DistributedRunner(
        agent, "CartPole-v1", 2, 1, max_episode_timesteps=5, seed=0, steps_per_round=7
    )
    try:
        runner.run(num_timesteps=100, use_tqdm=False)
        size = len(agent.memory)
        storage = agent.memory.storage
        starts = (storage["internals/network.lstm"][:size] == 0).all(axis=(1, 2))
        assert runner.episodes <= starts.sum() <= runner.episodes + 2  # + the running episodes
        assert (storage["next_internals/network.lstm"][:size] != 0).any(axis=(1, 2)).all()
        assert agent.updates > 0
    finally:
        runner.close()


def test_dqn_with_asynchronous_workers_learns_identity(local_ray):
    agent = Agent.create(DQN_FAST, environment=IdentityEnvironment, parallel_interactions=2)
    runner = DistributedRunner(agent, IdentityEnvironment, 2, 1, seed=0, steps_per_round=8)
    try:
        runner.run(num_timesteps=3000, use_tqdm=False)
        assert np.mean(runner.episode_returns[:20]) < 4.0  # random play scores about 2 of 8
        assert runner.updates == agent.updates >= 2500  # train_freq 1 past learning_starts
        assert runner.evaluate(num_episodes=10)["return_mean"] >= 7.0
    finally:
        runner.close()


def test_td3_with_asynchronous_workers_learns_a_continuous_target(local_ray):
    small = {"type": "auto", "size": 32, "depth": 2, "activation": "relu"}
    spec = {"agent": "td3", "seed": 0, "network": small, "critic": small, "discount": 0.0}
    spec.update(learning_starts=200, batch_size=64, learning_rate=3e-3)
    environment = {"environment": TargetEnvironment, "episode_length": 1}
    agent = Agent.create(spec, environment=environment, parallel_interactions=2)
    runner = DistributedRunner(agent, environment, 2, 1, seed=0, steps_per_round=8)
    try:
        runner.run(num_timesteps=1200, use_tqdm=False)
        assert len(agent.memory) == agent.timesteps == runner.timesteps >= 1200
        assert np.mean(runner.episode_returns[:100]) < -0.4  # random play: about -0.67
        assert runner.evaluate(num_episodes=50)["return_mean"] > -0.15
    finally:
        runner.close()


@pytest.mark.slow
def test_hydra_ray_launcher_runs_jobs_in_parallel_into_one_mlflow_store(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "train.py", "-m", "hydra/launcher=ray", "seed=0,1"]
    command += ["runner.num_timesteps=256", "eval_episodes=2", "tracker=mlflow"]
    command += [f"tracker.tracking_uri={store}", f"hydra.sweep.dir={tmp_path}/sweep"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["train"])
    assert sorted(runs["params.seed"]) == ["0", "1"]
    assert set(runs["status"]) == {"FINISHED"}
    assert "192." not in done.stderr and "Started a local Ray instance" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str]) -> int:
    """Run a ``ray start`` in a new process group; its pid is the group of the node's processes."""
    process = subprocess.Popen(
        args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = process.communicate(timeout=180)
    if process.returncode != 0:
        _stop(process.pid)
        raise RuntimeError(f"{args[:3]} failed:\n{output.decode()[-3000:]}")
    return process.pid


def _stop(group: int) -> None:
    """SIGTERM, then SIGKILL, the process group of one ``ray start`` (only what we started)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (resource ``head_node``) and a worker node (``second_node``) on 127.0.0.1."""
    if ray.is_initialized():
        ray.shutdown()
    port, temp = _free_port(), tempfile.mkdtemp(prefix="fxray")
    env = dict(os.environ)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    groups = []
    try:
        head = [ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false"]
        head += [f"--temp-dir={temp}", "--resources", json.dumps({"head_node": 4}), *common]
        groups.append(_start(head, {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}))
        worker = [sys.executable, "-c", LOOPBACK_WORKER, "start", f"--address=127.0.0.1:{port}"]
        worker += ["--resources", json.dumps({"second_node": 4}), *common]
        groups.append(_start(worker, {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}))
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for group in reversed(groups):
            _stop(group)
        shutil.rmtree(temp, ignore_errors=True)


ON_BOTH = [{"resources": {"head_node": 1}}, {"resources": {"second_node": 1}}]


def test_two_nodes_on_loopback_only(two_nodes):
    nodes = [n for n in two_nodes.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    runner = Runner("ppo", "CartPole-v1", num_parallel=2, remote="ray", ray_options=ON_BOTH)
    try:
        assert len({env.node for env in runner.environments}) == 2  # one actor per node
        runner.run(num_episodes=4, batch_agent_calls=True, use_tqdm=False)
        assert runner.episodes >= 4
    finally:
        runner.close()


def test_rollout_workers_on_both_nodes_survive_a_killed_worker(two_nodes):
    runner = DistributedRunner(_agent(1), "CartPole-v1", 2, 2, seed=0, worker_options=ON_BOTH)
    try:
        assert len(set(runner.nodes)) == 2
        runner.run(num_timesteps=64, use_tqdm=False)
        assert runner.updates == 1 and runner.timesteps == 64
        two_nodes.kill(runner.workers[1])
        runner.run(num_timesteps=64, use_tqdm=False)  # worker 1 replaced on its node
        assert runner.updates == 1 and runner.timesteps == 64 and runner.agent.updates == 2
        runner._restarts_left = 0
        two_nodes.kill(runner.workers[0])
        with pytest.raises(RemoteEnvironmentError, match=r"workers\[0\] on node 127\.0\.0\.1"):
            runner.run(num_timesteps=64, use_tqdm=False)
    finally:
        runner.close()
