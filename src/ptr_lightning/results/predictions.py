"""A run's saved predictions (``predictions.npz``, ``predictions_val.npz``), read and matched
image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptr_lightning.core import names

PER_IMAGE = ("probabilities", "labels", "ids")


def predictions_file(run: Path, split: str = "test") -> Path:
    """The predictions file of run folder ``run`` (or ``run`` itself, an ``.npz`` file)."""
    return run / names.PREDICTIONS_FILES[split] if run.is_dir() else run


class PredictionsError(ValueError):
    """A predictions file is missing, unreadable or not what a run writes; names the file."""


def load_predictions(run: Path, split: str = "test") -> dict[str, np.ndarray]:
    """Per image of ``split``: class probabilities, label and id; and the class names.
    Raises :class:`PredictionsError` naming the file when it cannot be used."""
    path = predictions_file(run, split)
    if not path.is_file():
        raise PredictionsError(f"{path} not found: give a finished run's folder")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as err:  # a truncated zip, an object array, not an npz at all
        raise PredictionsError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
    problem = shape_problem(arrays)
    if problem:
        raise PredictionsError(f"{path} is not a run's predictions file: {problem}")
    return arrays


def shape_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of a predictions file, or None."""
    missing = [key for key in PER_IMAGE if key not in arrays]
    if missing:
        return f"it lacks {', '.join(missing)}"
    probabilities, labels = arrays["probabilities"], arrays["labels"]
    if probabilities.ndim != 2 or labels.ndim != 1 or len(labels) != len(probabilities):
        return f"probabilities {probabilities.shape} do not match labels {labels.shape}"
    if len(arrays["ids"]) != len(labels):
        return f"{len(arrays['ids'])} ids for {len(labels)} labels"
    if len(labels) and not (labels.min() >= 0 and labels.max() < probabilities.shape[1]):
        return f"labels outside 0..{probabilities.shape[1] - 1}"
    return None


def aligned(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``b`` reordered to ``a``'s image ids; both runs must have tested the same images."""
    if sorted(a["ids"].tolist()) != sorted(b["ids"].tolist()):
        raise PredictionsError("the two runs tested different images (another split or data set)")
    order = {image_id: i for i, image_id in enumerate(b["ids"].tolist())}
    index = np.array([order[i] for i in a["ids"].tolist()])
    return {key: (value[index] if key in PER_IMAGE else value) for key, value in b.items()}
