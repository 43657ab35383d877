"""Pretrain from traces: `python pretrain.py agent=ppo env=cartpole pretrain.directory=...`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from forceexp.command import run_command
from forceexp.experiment import pretrain


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain")
def main(cfg: DictConfig) -> float:
    """Run one pretraining job; return the metric sweepers optimise (``cfg.optimized_metric``)."""
    return run_command(pretrain, cfg)


if __name__ == "__main__":
    main()
