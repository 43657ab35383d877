"""Serve an environment over TCP: ``python -m forceexp.serve env=cartpole port=65432``.

A Hydra app over the same ``env`` group as ``train.py``; the server serves many clients at once,
each with its own copy of the environment, and keeps serving after a client misbehaves.
Connect with ``Runner(..., remote='socket-client', host=..., port=...)``.
"""

from __future__ import annotations

import contextlib

import hydra
from omegaconf import DictConfig

from forceexp.config import build
from forceexp.environments import create


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    """Serve ``cfg.env`` on ``cfg.host:cfg.port`` until interrupted."""
    with contextlib.suppress(KeyboardInterrupt):
        create(
            build(cfg.env),
            remote="socket-server",
            host=str(cfg.host),
            port=int(cfg.port),
            secret=None if cfg.secret is None else str(cfg.secret),
            read_timeout=cfg.read_timeout,
            frame_timeout=cfg.frame_timeout,
            max_sessions=cfg.max_sessions,
            max_connections=cfg.max_connections,
        )


if __name__ == "__main__":
    main()
