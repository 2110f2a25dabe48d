"""The paper's Section 4 analysis of how PtR changes predictions, from two runs' predictions.

    python -m ptr_lightning.analysis <fine-tuning run folder> <PtR run folder>

Each run folder holds ``predictions.npz`` (test) and ``predictions_val.npz`` (validation): per
image, class probabilities, label, id. The paper analysed the validation set (CUB200, 584
images, ResNet-50): ``--split val`` reproduces that; the default is the test set.
Reported, as in Zhong & Maki (CVPR 2020), Section 4:
  S   = sum of the diagonal of C, where row y of C accumulates the predicted probabilities of
        the images of class y (certainty on the correct class; the paper: 404 FT -> 425 PtR)
  S'  = sum of the off-diagonal elements of C (probability spent on wrong classes)
  H   = mean entropy of the predictions in bits (the paper: 1.33 -> 1.15)
  true / false rectifications: images the baseline got wrong and PtR right, and the reverse.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptr_lightning import names


def probability_confusion(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """C (K x K): row y sums the predicted class probabilities of the images labelled y."""
    matrix = np.zeros((probabilities.shape[1],) * 2, dtype=np.float64)
    np.add.at(matrix, labels, probabilities)
    return matrix


def entropy_bits(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of each prediction (row), in bits."""
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return -(probabilities * np.log2(p)).sum(axis=1)


def mean_entropy_bits(probabilities: np.ndarray) -> float:
    return float(entropy_bits(probabilities).mean())


@dataclass(frozen=True)
class PredictionStats:
    accuracy: float
    diagonal_sum: float
    off_diagonal_sum: float
    entropy_bits: float


def prediction_stats(probabilities: np.ndarray, labels: np.ndarray) -> PredictionStats:
    matrix = probability_confusion(probabilities, labels)
    diagonal = float(np.trace(matrix))
    return PredictionStats(
        accuracy=float((probabilities.argmax(axis=1) == labels).mean()),
        diagonal_sum=diagonal,
        off_diagonal_sum=float(matrix.sum() - diagonal),
        entropy_bits=mean_entropy_bits(probabilities),
    )


def rectifications(
    baseline: np.ndarray, regularized: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of true rectifications (baseline wrong, regularized right) and false ones."""
    base_ok = baseline.argmax(axis=1) == labels
    reg_ok = regularized.argmax(axis=1) == labels
    return np.flatnonzero(~base_ok & reg_ok), np.flatnonzero(base_ok & ~reg_ok)


PREDICTION_FILES = names.PREDICTIONS_FILES
PER_IMAGE = ("probabilities", "labels", "ids")


def load_predictions(run: Path, split: str = "test") -> dict[str, np.ndarray]:
    path = run / PREDICTION_FILES[split] if run.is_dir() else run
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", type=Path, help="fine-tuning run folder (or predictions.npz)")
    parser.add_argument("regularized", type=Path, help="PtR run folder (or predictions.npz)")
    parser.add_argument("--split", choices=sorted(PREDICTION_FILES), default="test")
    args = parser.parse_args(argv)
    base = load_predictions(args.baseline, args.split)
    reg = aligned(base, load_predictions(args.regularized, args.split))
    labels = base["labels"]
    print(f"{len(labels)} {args.split} images, {base['probabilities'].shape[1]} classes")
    print(f"{'':12s} {'accuracy':>9s} {'S (diag)':>9s} {'S-prime':>9s} {'H (bits)':>9s}")
    for name, data in (("baseline", base), ("regularized", reg)):
        s = prediction_stats(data["probabilities"], labels)
        print(
            f"{name:12s} {100 * s.accuracy:9.2f} {s.diagonal_sum:9.1f} "
            f"{s.off_diagonal_sum:9.1f} {s.entropy_bits:9.3f}"
        )
    true_fix, false_fix = rectifications(base["probabilities"], reg["probabilities"], labels)
    print(f"true rectifications {len(true_fix)}, false rectifications {len(false_fix)}")
    for title, found in (("true", true_fix), ("false", false_fix)):
        if len(found):
            print(f"  {title}: " + ", ".join(str(base["ids"][i]) for i in found[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
