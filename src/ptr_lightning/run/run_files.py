"""The files a finished run leaves in its folder besides its checkpoint and CSV logs, and the
lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import write_json, write_npz
from ptr_lightning.core.switch_rules import never_switched_on

# What the terminal summary shows of the pseudo-task's last logged step.
SUMMARY_TELEMETRY = (names.PTR_W, names.PTR_G_CE, names.PTR_G_PTR, names.TRAIN_PTR_LOSS)


def write_split(out: Path, cfg: DictConfig, datamodule) -> None:
    """``split.json``: the split seed, the class names and the image ids of every split."""
    write_json(
        out / names.SPLIT_FILE,
        {
            "split_seed": cfg.dataset.get("split_seed"),
            "class_names": datamodule.class_names,
            **datamodule.split_ids,
        },
    )


def final_predictions(module, datamodule) -> dict[str, dict[str, np.ndarray]]:
    """Per split (``test``, ``val``), as the final model saw its images: class probabilities,
    label, image id and the class names; a split that was not evaluated is left out.

    Both with the test's views (ten crops where the data set uses them): the validation images
    went through one more pass after the test (``trainer.predict``), so the two splits'
    entropies and confusion sums compare (training-time validation used the centre crop).
    """
    final = {"test": module.predictions["test"], "val": module.predictions["predict"]}
    out = {}
    for split, parts in final.items():
        if not parts:
            continue
        probabilities, labels = (torch.cat(p) for p in zip(*parts, strict=True))
        out[split] = {
            "probabilities": probabilities.numpy(),
            "labels": labels.numpy(),
            "ids": np.array(datamodule.split_ids[split]),
            "class_names": np.array(datamodule.class_names),
        }
    return out


def write_predictions(out: Path, predictions: dict[str, dict[str, np.ndarray]]) -> None:
    """``predictions.npz`` (test) and ``predictions_val.npz`` (validation)."""
    for split, arrays in predictions.items():
        write_npz(out / names.PREDICTIONS_FILES[split], **arrays)


def summary(metrics: dict[str, Any], last_logged: dict[str, Any], out: Path, switch_rule) -> str:
    """A few lines for the terminal: test accuracy, PtR telemetry, where the files are.
    ``switch_rule`` is the gated regularizer's rule (``None``: no pseudo-task)."""
    lines = [
        f"{names.TEST_ACC} {metrics[names.TEST_ACC]:.4f}  "
        f"{names.TEST_ACC_1CROP} {metrics[names.TEST_ACC_1CROP]:.4f}  "
        f"{names.TEST_MEAN_CLASS_ACC} {metrics[names.TEST_MEAN_CLASS_ACC]:.4f}  "
        f"({metrics['epochs']} epochs, {metrics['seconds']:.0f} s)"
    ]
    if metrics["ptr_switch_epoch"] is not None:
        telemetry = "  ".join(
            f"{key} {float(last_logged[key]):.4g}"
            for key in SUMMARY_TELEMETRY
            if key in last_logged
        )
        lines.append(
            f"pseudo-task on since epoch {metrics['ptr_switch_epoch']}; last step: {telemetry}"
        )
    elif switch_rule is not None:
        lines.append(never_switched_on(switch_rule))
    lines.append(
        f"run folder: {out}  ({names.METRICS_FILE}, {names.CONFIG_FILE}, checkpoints/, "
        f"{names.CSV_DIR}/, {names.SPLIT_FILE}, predictions*.npz)"
    )
    return "\n".join(lines)
