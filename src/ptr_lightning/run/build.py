"""The parts of a run, built from its composed config; every part checks its own settings.

Two steps, each one call: :func:`build_components` builds everything that needs no data and no
weights (data module, regularizer, optimizer settings, learning-rate schedule, telemetry), so a
bad value fails, naming its Hydra key, before anything is written or loaded; :func:`assemble`
then reads the data's index, loads the weights, decodes the images, and puts the model, the
loggers, the callbacks and the trainer together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import SEED_RULE, Rule, check, integer
from ptr_lightning.model.backbones import (
    Pretrained,
    build_pretrained,
    check_model,
    layer_depths,
    prepare_to_run,
    split_classifier,
)
from ptr_lightning.model.fine_tuner import FineTuner
from ptr_lightning.model.optimizer import OptimizerSettings, optimizer_arguments
from ptr_lightning.model.switch_window import SwitchWindow
from ptr_lightning.model.telemetry import TelemetrySettings
from ptr_lightning.regularizers import Regularizer
from ptr_lightning.run.checkpoints import AtomicCheckpointIO, RandomStateCheckpoint, RunClock
from ptr_lightning.run.instantiate import instantiate, unknown_settings
from ptr_lightning.run.signals import SignalRecorder

FLOAT16 = {"16", "16-mixed", "16-true"}
TRAINER_RULES = {
    "max_epochs": integer("trainer.max_epochs", 1),
    "precision": Rule(
        "trainer.precision",
        lambda v: str(v) not in FLOAT16,
        "not float16, which PtR does not support: it reads gradients at the feature layer that "
        "GradScaler does not scale, so they underflow; use trainer.precision=bf16-mixed or "
        "32-true",
        kind="any",
    ),
}


# torch.compile modes that capture CUDA graphs: they need a CUDA GPU.
CUDA_COMPILE_MODES = {"reduce-overhead", "max-autotune"}


def check_devices(cfg: DictConfig) -> None:
    """Refuse a setting that needs a CUDA GPU on a machine without one, naming the setting."""
    wants = []
    if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda"):
        wants.append(f"trainer.accelerator={cfg.trainer.accelerator}")
    if cfg.get("gpu_pool"):
        wants.append("gpu_pool (cluster=local_gpus)")
    if cfg.model.get("compile") in CUDA_COMPILE_MODES:
        wants.append(f"model.compile={cfg.model.compile} (CUDA graphs)")
    if not wants or torch.cuda.is_available():
        return
    raise ConfigError(
        f"{', '.join(wants)}: this machine has no CUDA GPU (torch.cuda.is_available() is "
        "False). On a CPU leave trainer at its default (trainer=default, not trainer=gpu or "
        "trainer=ddp), no cluster=local_gpus, and model.compile=null or default."
    )


@dataclass
class Components:
    """A run's parts that need no data; each was checked when it was built."""

    datamodule: L.LightningDataModule
    regularizer: Regularizer
    optimizer: OptimizerSettings
    schedule: Callable[[torch.optim.Optimizer], Any]
    telemetry: TelemetrySettings


def build_components(cfg: DictConfig) -> Components:
    """Build (and so check) every part of ``cfg`` that needs no data and no weights."""
    SEED_RULE.check(cfg.seed)
    check(TRAINER_RULES, max_epochs=cfg.trainer.max_epochs, precision=cfg.trainer.get("precision"))
    check_model(cfg.model)
    regularizer = instantiate(cfg.regularizer, "regularizer")
    schedule = instantiate(cfg.scheduler, "scheduler")  # a partial: the optimizer comes later
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:  # checks its arguments
        schedule(probe, steps_per_epoch=lambda: 1)
    except TypeError:
        unknown = unknown_settings(cfg.scheduler, "scheduler")
        if unknown is None:
            raise
        raise ConfigError(unknown) from None
    return Components(
        datamodule=instantiate(cfg.dataset, "dataset"),
        regularizer=regularizer,
        optimizer=OptimizerSettings(
            lr=cfg.model.lr,
            weight_decay=cfg.model.weight_decay,
            head_lr_mult=cfg.model.head_lr_mult,
            layer_decay=cfg.model.get("layer_decay"),
            build=instantiate(optimizer_arguments(cfg.optimizer), "optimizer"),  # groups later
        ),
        schedule=schedule,
        telemetry=TelemetrySettings(**(cfg.get("telemetry") or {})),
    )


@dataclass
class Assembly:
    """A run put together: its data (set up), model, loggers and trainer."""

    datamodule: L.LightningDataModule
    module: FineTuner
    loggers: list[Any]
    trainer: L.Trainer
    signals: SignalRecorder  # which signal, if any, stopped training
    clock: RunClock  # the run's seconds over all its processes


def assemble(cfg: DictConfig, components: Components, started: float) -> Assembly:
    """Every part of the run, built once. The cheap checks of the data (its index), of the
    weights and of the model (a regularizer's source data and classifier) come before the slow
    part, decoding the images. ``started``: when this process began the run
    (``time.monotonic()``)."""
    datamodule = components.datamodule
    datamodule.prepare_data()
    pretrained = build_pretrained(cfg.model)
    module = build_module(cfg, datamodule, components, pretrained)
    datamodule.setup("fit")
    loggers = build_loggers(cfg)
    signals, clock = SignalRecorder(), RunClock(started)
    callbacks = build_callbacks(
        cfg,
        module.regularizer,
        Path(cfg.paths.output_dir),
        logging=bool(loggers),
        telemetry=components.telemetry,
    )
    trainer = build_trainer(cfg, [*callbacks, signals, clock], loggers)
    return Assembly(datamodule, module, loggers, trainer, signals, clock)


def build_module(
    cfg: DictConfig,
    datamodule,
    components: Components | None = None,
    pretrained: Pretrained | None = None,
) -> FineTuner:
    """The LightningModule for ``cfg``, with the (prepared) data module's classes and transforms.

    ``components`` and ``pretrained`` are built from ``cfg`` when not given.
    """
    components = components or build_components(cfg)
    pretrained = pretrained if pretrained is not None else build_pretrained(cfg.model)
    num_classes = datamodule.num_classes
    backbone, head, source_classifier = split_classifier(pretrained, cfg.model, num_classes)
    module = FineTuner(
        backbone,
        head,
        components.regularizer,
        source_classifier=source_classifier,
        num_classes=num_classes,
        optimizer=components.optimizer,
        schedule=components.schedule,
        train_transform=datamodule.train_transform,
        val_transform=datamodule.val_transform,
        test_transform=datamodule.test_transform,
        telemetry=components.telemetry,
        depths=layer_depths(backbone, cfg.model),
    )
    # After the module took its references (LwF copies the backbone as its eager teacher).
    prepare_to_run(module.backbone, module.head, cfg.model)
    return module


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = [
        instantiate(spec, f"logger.{name}") for name, spec in (cfg.get("logger") or {}).items()
    ]
    return [logger for logger in loggers if logger is not None]


def build_callbacks(
    cfg: DictConfig,
    regularizer: Regularizer,
    out: Path,
    *,
    logging: bool,
    telemetry: TelemetrySettings | None = None,
) -> list[L.Callback]:
    """The regularizer's own callbacks (PtR's switch), the checkpoints, the learning-rate
    monitor and the CE window around the switch (when something logs) and the config's extra
    ``callbacks``."""
    callbacks: list[L.Callback] = [
        *regularizer.callbacks(),
        # Written after the module's epoch end (switch decided, schedule stepped), so a resumed
        # run starts from exactly the state the uninterrupted run had at that point.
        ModelCheckpoint(
            dirpath=out / names.LAST_CHECKPOINT.parent,
            filename=names.LAST_CHECKPOINT.stem,  # one file, replaced every epoch
            save_top_k=1,
            monitor=None,
            enable_version_counter=False,
            save_on_train_epoch_end=True,
        ),
        RandomStateCheckpoint(),
    ]
    if logging:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if logging and regularizer.gated and telemetry and telemetry.watches_switch:
        callbacks.append(SwitchWindow(telemetry.switch_window))
    callbacks += [
        instantiate(spec, f"callbacks.{name}")
        for name, spec in (cfg.get("callbacks") or {}).items()
    ]
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Any]) -> L.Trainer:
    return L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
    )
