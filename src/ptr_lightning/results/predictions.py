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


def load_predictions(run: Path, split: str = "test") -> dict[str, np.ndarray]:
    """Per image of ``split``: class probabilities, label and id; and the class names."""
    path = predictions_file(run, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give a finished run's folder")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def aligned(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``b`` reordered to ``a``'s image ids; both runs must have tested the same images."""
    if sorted(a["ids"].tolist()) != sorted(b["ids"].tolist()):
        raise ValueError("the two runs tested different images (another split or data set)")
    order = {image_id: i for i, image_id in enumerate(b["ids"].tolist())}
    index = np.array([order[i] for i in a["ids"].tolist()])
    return {key: (value[index] if key in PER_IMAGE else value) for key, value in b.items()}
