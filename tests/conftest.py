"""Shared fixtures: Hydra compose helper, seeding, one torch thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """Compose ``conf/train.yaml`` with overrides and a literal output dir (no Hydra run needed)."""
    from hydra import compose, initialize_config_dir

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                "train",
                overrides=[
                    f"paths.output_dir={tmp_path}",
                    "runner.num_timesteps=256",
                    "runner.use_tqdm=false",
                    "eval_episodes=2",
                    *overrides,
                ],
            )

    return _compose
