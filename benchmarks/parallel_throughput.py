"""Steps/s on CartPole for N parallel environments in each execution mode (JSON lines).

``python benchmarks/parallel_throughput.py --num-parallel 1 2 4 8 16 --timesteps 4000``
Modes: batched (one act per step), unbatched (one act per environment), multiprocessing
(worker processes, batched calls), socket (servers on loopback, batched calls), ray (one Ray
actor per environment on a local instance, batched calls; needs the ``ray`` extra, not run by
default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import time
from typing import Any

import torch

from forceexp import Runner
from forceexp.environments.socket import serve

AGENT = {"agent": "ppo", "rollout_length": 64, "epochs": 2, "device": "cpu"}
MODES = ("batched", "unbatched", "multiprocessing", "socket", "ray")


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def measure(mode: str, count: int, timesteps: int) -> dict[str, Any]:
    """Run ``timesteps`` steps in ``mode`` with ``count`` environments; return steps/s."""
    servers: list[Any] = []
    kwargs: dict[str, Any] = {"environment": "CartPole-v1", "num_parallel": count}
    if mode in ("multiprocessing", "ray"):
        kwargs["remote"] = mode
    if mode == "socket":
        ports = free_ports(count)
        ctx = multiprocessing.get_context("forkserver")
        servers = [ctx.Process(target=serve, args=("CartPole-v1", "127.0.0.1", p)) for p in ports]
        for server in servers:
            server.start()
        kwargs = {"remote": "socket-client", "port": ports}
    runner = Runner(agent=dict(AGENT), **kwargs)
    try:
        runner.run(num_timesteps=min(200, timesteps), batch_agent_calls=mode != "unbatched")
        start = time.perf_counter()
        runner.run(num_timesteps=timesteps, batch_agent_calls=mode != "unbatched")
        seconds = time.perf_counter() - start
    finally:
        runner.close()
        for server in servers:
            server.terminate()
            server.join()
    steps = runner.timesteps  # this run's own count
    rate = steps / seconds
    return {"mode": mode, "num_parallel": count, "steps": steps, "steps_per_second": rate}


def main() -> None:
    """Parse arguments and print one JSON line per (mode, N)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", nargs="+", default=list(MODES[:-1]), choices=MODES)
    parser.add_argument("--num-parallel", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--timesteps", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for mode in args.modes:
        for count in args.num_parallel:
            print(json.dumps(measure(mode, count, args.timesteps)), flush=True)


if __name__ == "__main__":
    main()
