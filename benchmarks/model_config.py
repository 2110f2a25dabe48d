"""The ``model`` config of a benchmark's ``--arch``, composed as a run composes it.

``--arch`` is a preset (``conf/model/<name>.yaml``: resnet50, vit_b_16, ...), ``timm:<name>``
(``model=timm model.name=<name>``) or any other torchvision classification model
(``model=torchvision model.arch=<name>``); random weights, at ``size`` x ``size`` inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

import ptr_lightning.run.hydra_setup  # noqa: F401  (the ptr.* resolvers of the model configs)
from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.model.optimizer import optimizer_arguments

TIMM = "timm:"


def run_config(arch: str, size: int, extra: Sequence[str] = ()) -> DictConfig:
    """The composed config of a run of ``arch`` at ``size`` px; ``extra``: more overrides."""
    if arch.startswith(TIMM):
        model = ["model=timm", f"model.name={arch[len(TIMM) :]}"]
    elif (CONFIG_DIR / "model" / f"{arch}.yaml").is_file():
        model = [f"model={arch}"]
    else:
        model = ["model=torchvision", f"model.arch={arch}"]
    overrides = [*model, "model.weights=null", f"model.input.size={size}", *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def build_optimizer(cfg: DictConfig, params, lr: float = 1e-3):
    """The run's optimizer (``optimizer=sgd``, the paper's, or the family's, e.g. AdamW)."""
    factory = instantiate(optimizer_arguments(cfg.optimizer))
    return factory(params, lr=lr, weight_decay=cfg.model.weight_decay)
