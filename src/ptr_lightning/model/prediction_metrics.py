"""Per-class accuracy, confusion matrix, calibration and entropy of a model's predictions.

Inputs are what ``predictions.npz`` holds: class probabilities (N, K) and labels (N,). The
confusion matrix and the expected calibration error are torchmetrics'; the reliability bins use
torchmetrics' binning (``torch.bucketize(confidence, linspace(0, 1, n_bins + 1), right=True)``,
so a confidence of exactly 1 gets a bin of its own), which torchmetrics does not expose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    multiclass_calibration_error,
    multiclass_confusion_matrix,
)

from ptr_lightning.core.tensors import at_least_float32

N_BINS = 15  # torchmetrics' default number of calibration bins


def confusion_matrix(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, K) image counts: row = true class, column = predicted class (top-1)."""
    matrix = multiclass_confusion_matrix(
        torch.as_tensor(probabilities), torch.as_tensor(labels), probabilities.shape[1]
    )
    return matrix.numpy()


def per_class_accuracy(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the number of images and the top-1 accuracy (NaN for a class with none)."""
    matrix = confusion_matrix(probabilities, labels)
    counts = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.diag(matrix) / counts
    return counts, accuracy


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE: sum over confidence bins of |accuracy - confidence| x the bin's share of images."""
    return float(
        multiclass_calibration_error(
            torch.as_tensor(probabilities),
            torch.as_tensor(labels),
            probabilities.shape[1],
            n_bins=n_bins,
            norm="l1",
        )
    )


@dataclass(frozen=True)
class ReliabilityBins:
    """Per confidence bin (``n_bins`` + 1 for confidence 1): range, images, mean confidence,
    accuracy (0 where empty, as torchmetrics)."""

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        total = self.count.sum()
        return float((np.abs(self.accuracy - self.confidence) * self.count).sum() / total)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
) -> ReliabilityBins:
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    bounds = np.linspace(0.0, 1.0, n_bins + 1, dtype=np.float32).astype(np.float64)
    index = np.searchsorted(bounds, confidence.astype(np.float32), side="right") - 1
    count = np.bincount(index, minlength=n_bins + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.nan_to_num(np.bincount(index, confidence, n_bins + 1) / count)
        accuracy = np.nan_to_num(np.bincount(index, correct, n_bins + 1) / count)
    return ReliabilityBins(
        lower=bounds,
        upper=np.append(bounds[1:], 1.0),
        count=count,
        confidence=mean_conf,
        accuracy=accuracy,
    )


def entropy_bits(probabilities: Tensor) -> Tensor:
    """Entropy in bits of each row of class probabilities (0 log 0 taken as 0)."""
    p = at_least_float32(probabilities.detach())
    return -torch.special.xlogy(p, p).sum(dim=-1) / math.log(2.0)


class MeanClassAccuracy(Metric):
    """Accuracy per class, averaged over the classes that have images in the evaluated split
    (the paper's mean class accuracy). Not torchmetrics' macro average: it counts a class
    without images as 0 whenever the model predicts it."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("correct", torch.zeros(num_classes), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, probabilities: Tensor, labels: Tensor) -> None:
        # one_hot sums, not bincount: deterministic on CUDA too.
        per_class = F.one_hot(labels, self.num_classes).to(self.images.dtype)
        self.images += per_class.sum(dim=0)
        self.correct += per_class[probabilities.argmax(dim=-1) == labels].sum(dim=0)

    def compute(self) -> Tensor:
        present = self.images > 0
        return (self.correct[present] / self.images[present]).mean()
