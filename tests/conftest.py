"""Shared test helpers: configs composed through Hydra exactly as the CLI composes them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.run.hydra_setup import register_sweepers

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm's hub: tests never reach the network

# A run small enough for a unit test: 3 digit classes, 16x16 images, a few epochs, and a high
# threshold T so the pseudo-task switches on after the first epoch.
TINY = [
    "dataset.classes=[0,1,2]",
    "dataset.image_size=16",
    "dataset.train_per_class=8",
    "dataset.val_fraction=0.1",
    "dataset.batch_size=8",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``python -m ptr_lightning`` subprocess: W&B disabled unless
    ``extra`` says otherwise, unbuffered output, and the repository root on the path (tests
    hand the CLI callbacks from tests/)."""
    repo = str(Path(__file__).parents[1])
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "WANDB_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": pythonpath,
        **(extra or {}),
    }


def compose_with_hydra(overrides: list[str] | None = None) -> DictConfig:
    """``conf/config.yaml`` composed with ``overrides``, with Hydra's own node (sweeper,
    launcher) as the CLI sees it before it runs the jobs."""
    register_sweepers()  # as the CLI's __main__ does
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides or [], return_hydra_config=True)


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` (Hydra's own compose, as the CLI)."""
    cfg = compose_with_hydra(overrides)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the CLI hands train() the config without Hydra's own node
    return cfg


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, tiny=True)``: a composed config whose run folder is in tmp_path."""

    def make(*overrides: str, tiny: bool = True, out: str = "run") -> DictConfig:
        cfg = compose_config([*(TINY if tiny else []), *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / out)
        return cfg

    yield make
    GlobalHydra.instance().clear()


from tests.fixtures.sweeps import digits_sweep  # noqa: E402, F401  (a session fixture)
