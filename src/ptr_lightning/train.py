"""``train(cfg)``: one fine-tuning run from a composed Hydra config, returning its metrics."""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ptr_lightning import names
from ptr_lightning.backbones import build_pretrained
from ptr_lightning.build import (
    build_callbacks,
    build_components,
    build_loggers,
    build_module,
    build_trainer,
)
from ptr_lightning.loggers import finish_wandb
from ptr_lightning.module import FineTuner
from ptr_lightning.outputs import write_atomic, write_json, write_npz
from ptr_lightning.resume import keep_earlier_metrics, resume_config

log = logging.getLogger(__name__)

# Lightning notes that the module's on_after_batch_transfer wins over the DataModule's: intended,
# the batched on-device transforms live in the module.
warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Fine-tune, test the model of the last epoch, and write ``metrics.json``.

    The run folder ``cfg.paths.output_dir`` receives the resolved config (``config.yaml``),
    the checkpoints (``checkpoints/last.ckpt``, every epoch), the CSV metrics, ``split.json``,
    ``predictions.npz`` and ``metrics.json``. ``cfg.resume`` (a run folder) continues that run
    in its folder, with ``overrides`` (the command line's, e.g. ``trainer.max_epochs=60``)
    applied to its saved config; ``cfg.ckpt_path`` continues from a checkpoint in a new folder.
    """
    if cfg.get("resume"):
        cfg = resume_config(cfg, overrides)
    components = build_components(cfg)  # every setting is checked before anything is written
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        keep_earlier_metrics(out)
    write_atomic(out / names.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    started = time.monotonic()
    L.seed_everything(cfg.seed, workers=True)

    # The cheap checks of data and weights come before the slow part, decoding the images.
    datamodule = components.datamodule
    datamodule.prepare_data()
    pretrained = build_pretrained(cfg.model)
    datamodule.setup("fit")
    write_json(
        out / names.SPLIT_FILE,
        {
            "split_seed": cfg.dataset.get("split_seed"),
            "class_names": datamodule.class_names,
            **datamodule.split_ids,
        },
    )
    module = build_module(cfg, datamodule, components, pretrained)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(
        cfg, module.regularizer, out, logging=bool(loggers), telemetry=components.telemetry
    )
    trainer = build_trainer(cfg, callbacks, loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        last_epoch = {k: float(v) for k, v in trainer.callback_metrics.items()}
        # The paper evaluates the model after the last epoch, not the best checkpoint.
        (test_metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    finally:
        finish_wandb()

    regularizer = module.regularizer
    metrics: dict[str, Any] = {k: float(v) for k, v in test_metrics.items()}
    metrics.update({k: last_epoch[k] for k in (names.VAL_ACC, names.VAL_LOSS) if k in last_epoch})
    metrics.update(
        epochs=trainer.current_epoch,
        ptr_active=regularizer.gated and regularizer.active,
        ptr_switch_epoch=regularizer.switch_epoch,
        seconds=round(time.monotonic() - started, 1),
    )
    if trainer.is_global_zero:
        if trainer.world_size == 1:
            write_predictions(out, module, datamodule)
        else:
            log.warning("predictions.npz is written by single-device runs only")
        write_json(out / names.METRICS_FILE, metrics)
        print(summary(metrics, last_epoch, out, has_pseudo_task=regularizer.gated), flush=True)
    return metrics


def write_predictions(out: Path, module: FineTuner, datamodule) -> None:
    """Per image of the test (``predictions.npz``) and validation (``predictions_val.npz``)
    sets, as the final model saw them: class probabilities, label and image id."""
    for split, name in names.PREDICTIONS_FILES.items():
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
        f"{names.TEST_ACC} {metrics[names.TEST_ACC]:.4f}  "
        f"{names.TEST_ACC_1CROP} {metrics[names.TEST_ACC_1CROP]:.4f}  "
        f"{names.TEST_MEAN_CLASS_ACC} {metrics[names.TEST_MEAN_CLASS_ACC]:.4f}  "
        f"({metrics['epochs']} epochs, {metrics['seconds']:.0f} s)"
    ]
    if metrics["ptr_switch_epoch"] is not None:
        telemetry = "  ".join(
            f"{key} {float(last_logged[key]):.4g}"
            for key in (names.PTR_W, names.PTR_G_CE, names.PTR_G_PTR, names.TRAIN_PTR_LOSS)
            if key in last_logged
        )
        lines.append(
            f"pseudo-task on since epoch {metrics['ptr_switch_epoch']}; last step: {telemetry}"
        )
    elif has_pseudo_task:
        lines.append("pseudo-task: not switched on (epoch-mean CE stayed >= T)")
    lines.append(
        f"run folder: {out}  ({names.METRICS_FILE}, {names.CONFIG_FILE}, checkpoints/, "
        f"{names.CSV_DIR}/, {names.SPLIT_FILE}, predictions*.npz)"
    )
    return "\n".join(lines)


def run_job(
    cfg: DictConfig, overrides: Sequence[str] = (), *, multirun: bool = False
) -> float | None:
    """What the CLI runs for each job: ``train(cfg)``, its error kept in the run folder.

    A failing job writes ``error.txt`` (the traceback) to its folder. In a multirun the sweep
    goes on with the other jobs (the job returns NaN to a sweeper, and the report lists it);
    a single run fails with the error. SIGTERM ends the process with status 143 after the
    checkpoint is written.
    """
    try:
        return objective(cfg, train(cfg, overrides))
    except SIGTERMException:
        # Pre-empted: the checkpoint is written (CheckpointOnSigterm). Exit as a terminated
        # process does, so a scheduler or script never takes this run for a finished one.
        write_atomic(Path(cfg.paths.output_dir) / names.ERROR_FILE, "terminated by SIGTERM\n")
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception:
        out = Path(cfg.paths.output_dir)
        write_atomic(out / names.ERROR_FILE, traceback.format_exc())
        if not multirun:
            raise
        log.exception("job failed; its error is in %s; the sweep goes on", out / names.ERROR_FILE)
        return math.nan


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper optimizes (``cfg.optimized_metric``); NaN if the run lacks it."""
    key = cfg.get("optimized_metric")
    if not key:
        return None
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else math.nan
