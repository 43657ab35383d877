"""Train an agent: `python train.py agent=ppo env=cartpole [key=value ...]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from forceexp.command import run_command
from forceexp.experiment import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Run one training job; return the metric sweepers optimise (``cfg.optimized_metric``)."""
    return run_command(train, cfg)


if __name__ == "__main__":
    main()
