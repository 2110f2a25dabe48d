"""``train(cfg)``: one fine-tuning run from a composed Hydra config, returning its metrics."""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ptr_lightning.backbones import build_backbone_and_head
from ptr_lightning.callbacks import PseudoTaskSwitch
from ptr_lightning.config_checks import check_config
from ptr_lightning.fault_tolerance import CheckpointOnSigterm, RandomStateCheckpoint
from ptr_lightning.loggers import finish_wandb
from ptr_lightning.module import FineTuner
from ptr_lightning.outputs import write_atomic, write_json, write_npz
from ptr_lightning.resume import (
    LAST_CHECKPOINT,
    command_line_overrides,
    keep_earlier_metrics,
    resume_config,
)

log = logging.getLogger(__name__)

# Lightning notes that the module's on_after_batch_transfer wins over the DataModule's: intended,
# the batched on-device transforms live in the module.
warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")


def build_module(cfg: DictConfig, datamodule) -> FineTuner:
    """The LightningModule for ``cfg``, with the data module's classes and transforms."""
    num_classes = datamodule.num_classes
    backbone, head, source_classifier = build_backbone_and_head(cfg.model, num_classes)
    return FineTuner(
        backbone,
        head,
        instantiate(cfg.regularizer),
        source_classifier=source_classifier,
        num_classes=num_classes,
        lr=cfg.model.lr,
        momentum=cfg.optimizer.momentum,
        weight_decay=cfg.model.weight_decay,
        head_lr_mult=cfg.model.head_lr_mult,
        train_transform=datamodule.train_transform,
        val_transform=datamodule.val_transform,
        test_transform=datamodule.test_transform,
    )


def build_callbacks(cfg: DictConfig, module: FineTuner, out: Path) -> list[L.Callback]:
    callbacks: list[L.Callback] = []
    if module.regularizer.gated:
        callbacks.append(PseudoTaskSwitch(threshold=module.regularizer.T))
    callbacks.append(instantiate(cfg.scheduler))
    # Saved in on_train_epoch_end, after the switch and the schedule have stepped, so a resumed
    # run starts from exactly the state the uninterrupted run had at that point.
    callbacks.append(
        ModelCheckpoint(
            dirpath=out / "checkpoints",
            filename=LAST_CHECKPOINT.stem,  # one file, replaced every epoch
            save_top_k=1,
            monitor=None,
            enable_version_counter=False,
            save_on_train_epoch_end=True,
        )
    )
    callbacks += [RandomStateCheckpoint(), CheckpointOnSigterm(out / LAST_CHECKPOINT)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = [instantiate(spec) for spec in (cfg.get("logger") or {}).values()]
    return [logger for logger in loggers if logger is not None]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fine-tune, test the model of the last epoch, and write ``metrics.json``.

    The run folder ``cfg.paths.output_dir`` receives the resolved config (``config.yaml``),
    the checkpoints (``checkpoints/last.ckpt``, every epoch), the CSV metrics, ``split.json``,
    ``predictions.npz`` and ``metrics.json``. ``cfg.resume`` (a run folder) continues that run
    in its folder; ``cfg.ckpt_path`` continues from a checkpoint in a new folder.
    """
    if cfg.get("resume"):
        cfg = resume_config(cfg, command_line_overrides())
    check_config(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        keep_earlier_metrics(out)
    write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    started = time.monotonic()
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    write_json(
        out / "split.json",
        {
            "split_seed": cfg.dataset.get("split_seed"),
            "class_names": datamodule.class_names,
            **datamodule.split_ids,
        },
    )
    module = build_module(cfg, datamodule)
    loggers = build_loggers(cfg)
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        callbacks=build_callbacks(cfg, module, out),
        logger=loggers or False,
        default_root_dir=str(out),
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        last_epoch = {k: float(v) for k, v in trainer.callback_metrics.items()}
        # The paper evaluates the model after the last epoch, not the best checkpoint.
        (test_metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    finally:
        finish_wandb()

    metrics: dict[str, Any] = {k: float(v) for k, v in test_metrics.items()}
    metrics.update({k: last_epoch[k] for k in ("val/acc", "val/loss") if k in last_epoch})
    switch = next((c for c in trainer.callbacks if isinstance(c, PseudoTaskSwitch)), None)
    metrics.update(
        epochs=trainer.current_epoch,
        ptr_active=bool(switch and switch.active),
        ptr_switch_epoch=switch.switch_epoch if switch else None,
        seconds=round(time.monotonic() - started, 1),
    )
    if trainer.is_global_zero:
        if trainer.world_size == 1:
            write_predictions(out, module, datamodule)
        else:
            log.warning("predictions.npz is written by single-device runs only")
        write_json(out / "metrics.json", metrics)
        print(summary(metrics, last_epoch, out, has_pseudo_task=switch is not None), flush=True)
    return metrics


def write_predictions(out: Path, module: FineTuner, datamodule) -> None:
    """Per image of the test (``predictions.npz``) and validation (``predictions_val.npz``)
    sets, as the final model saw them: class probabilities, label and image id."""
    for split, name in (("test", "predictions.npz"), ("val", "predictions_val.npz")):
        parts = module.predictions[split]
        if not parts:
            continue
        probs, labels = (torch.cat(p) for p in zip(*parts, strict=True))
        write_npz(
            out / name,
            probabilities=probs.numpy(),
            labels=labels.numpy(),
            ids=np.array(datamodule.split_ids[split]),
            class_names=np.array(datamodule.class_names),
        )


def summary(
    metrics: dict[str, Any], last_logged: dict[str, Any], out: Path, has_pseudo_task: bool
) -> str:
    """A few lines for the terminal: test accuracy, PtR telemetry, where the files are."""
    lines = [
        f"test/acc {metrics['test/acc']:.4f}  test/acc_1crop {metrics['test/acc_1crop']:.4f}  "
        f"test/mean_class_acc "
        f"{metrics['test/mean_class_acc']:.4f}  ({metrics['epochs']} epochs, "
        f"{metrics['seconds']:.0f} s)"
    ]
    if metrics["ptr_switch_epoch"] is not None:
        telemetry = "  ".join(
            f"{key} {float(last_logged[key]):.4g}"
            for key in ("ptr/w", "ptr/g_ce", "ptr/g_ptr", "train/ptr_loss")
            if key in last_logged
        )
        lines.append(
            f"pseudo-task on since epoch {metrics['ptr_switch_epoch']}; last step: {telemetry}"
        )
    elif has_pseudo_task:
        lines.append("pseudo-task: not switched on (epoch-mean CE stayed >= T)")
    lines.append(
        f"run folder: {out}  (metrics.json, config.yaml, checkpoints/, csv/, split.json, "
        "predictions*.npz)"
    )
    return "\n".join(lines)


def run_job(cfg: DictConfig) -> float | None:
    """What the CLI runs for each job: ``train(cfg)``, its error kept in the run folder.

    A failing job writes ``error.txt`` (the traceback) to its folder. In a multirun the sweep
    goes on with the other jobs (the job returns NaN to a sweeper, and the report lists it);
    a single run fails with the error. SIGTERM ends the process with status 143 after the
    checkpoint is written.
    """
    try:
        return objective(cfg, train(cfg))
    except SIGTERMException:
        # Pre-empted: the checkpoint is written (CheckpointOnSigterm). Exit as a terminated
        # process does, so a scheduler or script never takes this run for a finished one.
        write_atomic(Path(cfg.paths.output_dir) / "error.txt", "terminated by SIGTERM\n")
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception:
        out = Path(cfg.paths.output_dir)
        write_atomic(out / "error.txt", traceback.format_exc())
        if not is_multirun():
            raise
        log.exception("job failed; its error is in %s; the sweep goes on", out / "error.txt")
        return math.nan


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper optimizes (``cfg.optimized_metric``); NaN if the run lacks it."""
    key = cfg.get("optimized_metric")
    if not key:
        return None
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else math.nan
