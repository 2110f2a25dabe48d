"""``train(cfg)``: one fine-tuning run from a composed Hydra config, returning its metrics."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ptr_lightning import names
from ptr_lightning.backbones import build_pretrained
from ptr_lightning.build import (
    Components,
    build_callbacks,
    build_components,
    build_loggers,
    build_module,
    build_trainer,
)
from ptr_lightning.checkpoints import check_fits, read_checkpoint
from ptr_lightning.dashboards import hyperparameters, publish_run
from ptr_lightning.errors import USER_ERRORS, ConfigError, Interrupted
from ptr_lightning.fault_tolerance import SignalRecorder
from ptr_lightning.gpu_pool import claim_gpu
from ptr_lightning.identity import fill_run_identity
from ptr_lightning.loggers import finish_wandb, wandb_loggers
from ptr_lightning.module import FineTuner
from ptr_lightning.outputs import write_atomic, write_json, write_npz
from ptr_lightning.paths import AUTO_RESUME
from ptr_lightning.resume import auto_resume, keep_earlier_metrics, resume_config
from ptr_lightning.run_folder import hold

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
    applied to its saved config; ``resume=auto`` continues from the run folder's own
    checkpoint if it has one; ``cfg.ckpt_path`` continues from a checkpoint in a new folder.
    One live run per folder: a second one is refused (:class:`RunFolderInUseError`).
    """
    if cfg.get("resume") == AUTO_RESUME:
        cfg = auto_resume(cfg)
    elif cfg.get("resume"):
        cfg = resume_config(cfg, overrides)
    fill_run_identity(cfg)
    components = build_components(cfg)  # every setting is checked before anything is written
    out = Path(cfg.paths.output_dir)
    with hold(out), gpu_of_the_pool(cfg):
        metrics = fit_and_test(cfg, components, out)
    # A finished run leaves no error.txt from an earlier, interrupted or failed, attempt.
    (out / names.ERROR_FILE).unlink(missing_ok=True)
    return metrics


@contextmanager
def gpu_of_the_pool(cfg: DictConfig) -> Iterator[None]:
    """With ``gpu_pool`` (cluster=local_gpus), run on a GPU no other job of the sweep holds."""
    if not cfg.get("gpu_pool"):
        yield
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(f"gpu_pool={cfg.gpu_pool}: no GPU is visible to this job")
    with claim_gpu(Path(cfg.gpu_pool), count) as index:
        with open_dict(cfg):
            cfg.trainer.accelerator, cfg.trainer.devices = "gpu", [index]
        yield


def fit_and_test(cfg: DictConfig, components: Components, out: Path) -> dict[str, Any]:
    ckpt_path = cfg.get("ckpt_path")
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None  # readable, before the data
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
    if checkpoint is not None:
        check_fits(checkpoint, module, ckpt_path)
        del checkpoint
    loggers = build_loggers(cfg)
    signals = SignalRecorder()
    callbacks = [
        *build_callbacks(
            cfg, module.regularizer, out, logging=bool(loggers), telemetry=components.telemetry
        ),
        signals,
    ]
    trainer = build_trainer(cfg, callbacks, loggers)
    for logger in loggers:
        logger.log_hyperparams(hyperparameters(cfg, module))
    regularizer = module.regularizer
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        last_epoch = {k: float(v) for k, v in trainer.callback_metrics.items()}
        # The paper evaluates the model after the last epoch, not the best checkpoint.
        (test_metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
        # The validation images with the test's views, for predictions_val.npz.
        val_loader = datamodule.val_dataloader()
        trainer.predict(module, dataloaders=val_loader, return_predictions=False)

        metrics: dict[str, Any] = {k: float(v) for k, v in test_metrics.items()}
        metrics.update(
            {k: last_epoch[k] for k in (names.VAL_ACC, names.VAL_LOSS) if k in last_epoch}
        )
        metrics.update(
            epochs=trainer.current_epoch,
            pseudo_task=regularizer.gated,  # PtR or FNP: the switch matters
            ptr_active=regularizer.gated and regularizer.active,
            ptr_switch_epoch=regularizer.switch_epoch,
            seconds=round(time.monotonic() - started, 1),
        )
        if trainer.is_global_zero:
            write_predictions(out, module, datamodule)
            write_json(out / names.METRICS_FILE, metrics)
            publish_to_wandb(loggers, out, datamodule)
    except BaseException:
        if signals.signum is None:
            raise
        raise Interrupted(signals.signum, interruption_message(signals.signum, out)) from None
    finally:
        finish_wandb()
    if trainer.is_global_zero:
        print(summary(metrics, last_epoch, out, has_pseudo_task=regularizer.gated), flush=True)
    return metrics


def interruption_message(signum: int, out: Path) -> str:
    """What stopped the run and from where ``resume=`` continues it."""
    name = signal.Signals(signum).name
    last = out / names.LAST_CHECKPOINT
    if not last.is_file():
        return (
            f"terminated by {name} before its first epoch ended: no checkpoint to resume "
            "from; start the run again."
        )
    epoch = read_checkpoint(last)["epoch"]
    return (
        f"terminated by {name}. {names.LAST_CHECKPOINT} holds the end of epoch {epoch}: "
        f"resume with  python -m ptr_lightning resume={out}  (the interrupted epoch is "
        "repeated from its start, so the run ends as if never interrupted)."
    )


def publish_to_wandb(loggers: list[Any], out: Path, datamodule) -> None:
    """The end-of-run tables, images and files on W&B; a W&B failure never fails the run."""
    for logger in wandb_loggers(loggers):
        try:
            publish_run(logger, out, datamodule.test_dataset)
        except Exception as err:
            log.warning("W&B: the end-of-run tables and files were not logged (%s)", err)


def write_predictions(out: Path, module: FineTuner, datamodule) -> None:
    """Per image of the test (``predictions.npz``) and validation (``predictions_val.npz``)
    sets, as the final model saw them: class probabilities, label and image id.

    Both with the test's views (ten crops where the data set uses them): the validation images
    went through one more pass after the test (``trainer.predict``), so the two files'
    entropies and confusion sums compare (training-time validation used the centre crop).
    """
    final = {"test": module.predictions["test"], "val": module.predictions["predict"]}
    for split, name in names.PREDICTIONS_FILES.items():
        parts = final[split]
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
        lines.append(
            "pseudo-task: not switched on (latch, epoch: the epoch-mean CE stayed >= T; "
            "lr_drop: the rate never dropped)"
        )
    lines.append(
        f"run folder: {out}  ({names.METRICS_FILE}, {names.CONFIG_FILE}, checkpoints/, "
        f"{names.CSV_DIR}/, {names.SPLIT_FILE}, predictions*.npz)"
    )
    return "\n".join(lines)


def run_job(
    cfg: DictConfig, overrides: Sequence[str] = (), *, multirun: bool = False
) -> float | None:
    """What the CLI runs for each job: ``train(cfg)``, its error kept in the run folder.

    A failing job writes ``error.txt`` (the traceback) to its folder. An error whose message
    says what to do (a bad setting, a missing data set, ...) prints as those few lines; its
    traceback is in ``error.txt`` (``HYDRA_FULL_ERROR=1`` prints it too). In a multirun the
    sweep goes on with the other jobs (the job returns no value to a sweeper, and the report
    lists it); a single run exits with status 1. SIGTERM and SIGINT end the process with status
    143 and 130, leaving ``error.txt`` with the resume command.
    """
    out = Path(cfg.paths.output_dir)
    try:
        metrics = train(cfg, overrides)
        return objective(cfg, metrics) if multirun else None
    except Interrupted as stop:
        write_atomic(out / names.ERROR_FILE, f"{stop}\n")
        log.warning("%s", stop)
        raise SystemExit(128 + stop.signum) from None
    except Exception as err:
        write_atomic(out / names.ERROR_FILE, traceback.format_exc())
        if multirun:
            log.error("job failed: %s\n(its traceback is in %s; the sweep goes on)", err, out)
            return None
        if not isinstance(err, USER_ERRORS) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            f"{type(err).__name__}: {err}\n(traceback in {out / names.ERROR_FILE}; "
            "HYDRA_FULL_ERROR=1 prints it here)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper optimizes (``cfg.optimized_metric``); None if there is none.

    A run of a gated regularizer (PtR, FNP) whose pseudo-task never switched on was plain
    fine-tuning: it says nothing about R or m, so it returns None, which the Optuna sweeper
    records as a failed trial instead of ranking it (NaN would stop the whole search: the
    sweeper re-reports a NaN trial with its value and Optuna refuses that).
    """
    key = cfg.get("optimized_metric")
    if not key:
        return None
    if metrics.get("pseudo_task") and metrics.get("ptr_switch_epoch") is None:
        log.warning(
            "the pseudo-task never switched on (regularizer.switch=%s never turned it on): this "
            "run was plain fine-tuning, so it returns no value: the sweeper records a failed trial",
            cfg.regularizer.get("switch", "latch"),
        )
        return None
    value = metrics.get(key)
    finite = isinstance(value, int | float) and math.isfinite(value)
    return float(value) if finite else None
