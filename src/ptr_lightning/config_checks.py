"""Check a composed configuration before any data is loaded or a model is built."""

from __future__ import annotations

import math
from collections.abc import Callable

import torchvision
from omegaconf import DictConfig, OmegaConf

from ptr_lightning.errors import ConfigError
from ptr_lightning.ptr import REGRESSION_LOSSES

_MISSING = object()

# (key, test, what is allowed); a key absent from the config is not checked.
NUMERIC_RULES: list[tuple[str, Callable[[float], bool], str]] = [
    ("regularizer.R", lambda v: v > 0, "> 0 (the CE : pseudo-task gradient-norm ratio)"),
    ("regularizer.m", lambda v: v >= 0, ">= 0 (targets are Uniform[0, 2m))"),
    ("regularizer.T", lambda v: v >= 0, ">= 0 (the epoch-mean CE that switches PtR on)"),
    ("model.lr", lambda v: v > 0, "> 0"),
    ("model.head_lr_mult", lambda v: v > 0, "> 0"),
    ("model.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("dataset.batch_size", lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1"),
    ("dataset.eval_batch_size", lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1"),
    ("dataset.val_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("dataset.image_size", lambda v: v >= 8 and float(v).is_integer(), "an integer >= 8"),
    ("dataset.crop", lambda v: v >= 8 and float(v).is_integer(), "an integer >= 8"),
    ("dataset.max_scale", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("dataset.max_rotation", lambda v: 0 <= v <= 180, "in [0, 180] degrees"),
    ("regularizer.alpha", lambda v: v >= 0, ">= 0"),
    ("regularizer.beta", lambda v: v >= 0, ">= 0"),
    ("regularizer.eta", lambda v: v >= 0, ">= 0"),
    ("regularizer.weight", lambda v: v >= 0, ">= 0"),
    ("regularizer.temperature", lambda v: v > 0, "> 0"),
    ("regularizer.k", lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1"),
    ("trainer.max_epochs", lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1"),
    ("scheduler.patience", lambda v: v >= 1, ">= 1"),
    ("scheduler.factor", lambda v: 0 < v < 1, "in (0, 1)"),
    ("scheduler.gamma", lambda v: 0 < v < 1, "in (0, 1)"),
]


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=_MISSING)


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key, its value and what is allowed."""
    for key, ok, allowed in NUMERIC_RULES:
        value = _get(cfg, key)
        if value is _MISSING or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{key}={value!r} must be a number {allowed}")
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: it must be {allowed}")

    loss = _get(cfg, "regularizer.loss")
    if loss is not _MISSING and loss not in REGRESSION_LOSSES:
        raise ConfigError(
            f"regression loss {loss!r} is unknown (regularizer.loss): use regression=sml1 "
            f"(smooth_l1) or regression=l2; known: {sorted(REGRESSION_LOSSES)}"
        )

    arch = _get(cfg, "model.arch")
    if arch not in torchvision.models.list_models(torchvision.models):
        raise ConfigError(
            f"model.arch={arch!r} is not a torchvision classification backbone; pick a model "
            "config: model=vgg16, vgg16_bn, resnet18, resnet50 or resnet101"
        )
    if str(_get(cfg, "trainer.precision")) in {"16", "16-mixed", "16-true"}:
        raise ConfigError(
            f"trainer.precision={_get(cfg, 'trainer.precision')!r}: float16 is not supported "
            "(PtR reads gradients at the feature layer that GradScaler does not scale, so they "
            "underflow); use trainer.precision=bf16-mixed, or 32-true"
        )
    crop, size = _get(cfg, "dataset.crop"), _get(cfg, "dataset.image_size")
    if isinstance(crop, int) and isinstance(size, int) and crop > size:
        raise ConfigError(f"dataset.crop={crop} must not exceed dataset.image_size={size}")
    reader = _get(cfg, "dataset.reader")
    if reader is not _MISSING:
        from ptr_lightning.data.archives import READERS

        if reader not in READERS:
            raise ConfigError(f"dataset.reader={reader!r} is unknown; known: {sorted(READERS)}")
    milestones = _get(cfg, "scheduler.milestones")
    if milestones not in (_MISSING, None) and not all(0 < float(f) < 1 for f in milestones):
        raise ConfigError(
            f"scheduler.milestones={list(milestones)} must be fractions of max_epochs in (0, 1)"
        )
