"""``train(cfg)``: one fine-tuning run from a composed Hydra config, returning its metrics.

The run's lifecycle: settle the config (a resume's, the run's identity), check every setting,
hold the run folder, assemble the parts (:mod:`ptr_lightning.run.build`), fit, test the model
of the last epoch, write the run's files.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import write_atomic, write_json
from ptr_lightning.core.errors import Interrupted
from ptr_lightning.run.build import (
    Assembly,
    Components,
    assemble,
    build_components,
    check_devices,
)
from ptr_lightning.run.checkpoints import check_fits, read_checkpoint
from ptr_lightning.run.gpu_pool import gpu_of_the_pool
from ptr_lightning.run.resume import earlier_metrics, keep_earlier_metrics, run_config
from ptr_lightning.run.run_files import (
    final_predictions,
    summary,
    write_predictions,
    write_split,
)
from ptr_lightning.run.run_folder import (
    hold,
    refuse_if_live,
    refuse_to_train_over,
    replace_outputs,
)
from ptr_lightning.run.signals import interruption_message
from ptr_lightning.tracking.end_of_run import publish_to_wandb
from ptr_lightning.tracking.hyperparameters import hyperparameters
from ptr_lightning.tracking.wandb_logger import finish_wandb

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
    cfg, components = prepare(cfg, overrides)
    out = Path(cfg.paths.output_dir)
    with hold(out), gpu_of_the_pool(cfg):
        if cfg.get("overwrite"):
            replace_outputs(out)
        metrics = fit_and_test(cfg, components, out)
    # A finished run leaves no error.txt from an earlier, interrupted or failed, attempt.
    (out / names.ERROR_FILE).unlink(missing_ok=True)
    return metrics


def prepare(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, Components]:
    """The config this run goes with and its parts that need no data, every setting checked; a
    folder that holds another run, or a live one, and a GPU setting without a GPU, refused.
    Nothing is written: the command line runs this before Hydra makes the run folder
    (:mod:`ptr_lightning.run.preflight`), and :func:`train` again."""
    if cfg.paths.get("output_dir"):  # a resume in Python may leave it to the resumed run's
        refuse_if_live(Path(cfg.paths.output_dir))
    refuse_to_train_over(cfg)
    cfg = run_config(cfg, overrides)
    refuse_if_live(Path(cfg.paths.output_dir))  # a resumed run's folder
    check_devices(cfg)
    return cfg, build_components(cfg)


def fit_and_test(cfg: DictConfig, components: Components, out: Path) -> dict[str, Any]:
    """Assemble the run in ``out``, fit it, test it and write its files."""
    started = time.monotonic()
    ckpt_path = cfg.get("ckpt_path")
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None  # readable, before the data
    earlier = earlier_metrics(out) if ckpt_path else {}
    if ckpt_path:
        keep_earlier_metrics(out)
    write_atomic(out / names.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    run = assemble(cfg, components, started)
    write_split(out, cfg, run.datamodule)
    if checkpoint is not None:
        check_fits(checkpoint, run.module, ckpt_path)
        del checkpoint
    for logger in run.loggers:
        logger.log_hyperparams(hyperparameters(cfg, run.module))
    try:
        metrics, last_logged = fit_test_predict(run, ckpt_path)
        # The larger: a finished run's metrics.json also counts its test; a checkpoint written
        # after it (a resume interrupted before finishing) counts the processes since.
        before = max(earlier.get("seconds", 0.0), run.clock.before)
        metrics = {**earlier, **metrics, "seconds": round(before + run.clock.elapsed(), 1)}
        if run.trainer.is_global_zero:
            predictions = final_predictions(run.module, run.datamodule)
            write_predictions(out, predictions)
            write_json(out / names.METRICS_FILE, metrics)
            publish_to_wandb(run.loggers, out, predictions, run.datamodule.test_dataset)
    except BaseException:
        if run.signals.signum is None:
            raise
        raise Interrupted(
            run.signals.signum, interruption_message(run.signals.signum, out)
        ) from None
    finally:
        finish_wandb()
    if run.trainer.is_global_zero:
        regularizer = run.module.regularizer
        print(summary(metrics, last_logged, out, regularizer.switch_rule), flush=True)
    return metrics


def fit_test_predict(run: Assembly, ckpt_path: str | None) -> tuple[dict[str, Any], dict]:
    """Fit, test the model of the last epoch (the paper's protocol, not the best checkpoint) and
    predict the validation images with the test's views; the run's metrics and the values last
    logged in training."""
    trainer, module, datamodule = run.trainer, run.module, run.datamodule
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    last_logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    (tested,) = trainer.test(module, datamodule=datamodule, verbose=False)
    trainer.predict(module, dataloaders=datamodule.val_dataloader(), return_predictions=False)
    metrics: dict[str, Any] = {k: float(v) for k, v in tested.items()}
    metrics.update({k: last_logged[k] for k in (names.VAL_ACC, names.VAL_LOSS) if k in last_logged})
    regularizer = module.regularizer
    metrics.update(
        epochs=trainer.current_epoch,
        pseudo_task=regularizer.gated,  # PtR or FNP: the switch matters
        ptr_active=regularizer.gated and regularizer.active,
        ptr_switch_epoch=regularizer.switch_epoch,
    )
    return metrics, last_logged
