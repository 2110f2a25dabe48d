"""Metrics over a model's predictions."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from ptr_lightning.model.prediction_metrics import MeanClassAccuracy


def test_mean_class_accuracy_averages_over_the_classes_the_split_has():
    """Trained on a/b/c, tested on b/c only: class a has no test image but is predicted."""
    probabilities = torch.eye(3)[torch.tensor([0, 1, 2, 2])]  # predicted: a, b, c, c
    labels = torch.tensor([1, 1, 2, 2])  # b, b, c, c
    metric = MeanClassAccuracy(3)
    metric.update(probabilities[:2], labels[:2])  # over two batches, as in a test loop
    metric.update(probabilities[2:], labels[2:])
    # b: 1 of 2 right, c: 2 of 2 right -> (0.5 + 1) / 2; torchmetrics' macro average says 0.5
    assert float(metric.compute()) == pytest.approx(0.75)
    macro = MulticlassAccuracy(3, average="macro")(probabilities, labels)
    assert float(macro) == pytest.approx(0.5)  # counts a as 0: what this metric avoids


def test_the_issue_case_gives_one_half_not_one_third():
    probabilities = torch.eye(3)[torch.tensor([0, 2])]  # b -> a (wrong), c -> c
    metric = MeanClassAccuracy(3)
    metric.update(probabilities, torch.tensor([1, 2]))
    assert float(metric.compute()) == pytest.approx(0.5)
    assert float(MulticlassAccuracy(3, average="macro")(probabilities, torch.tensor([1, 2]))) == (
        pytest.approx(1 / 3)
    )
