"""The Section 4 analysis on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from ptr_lightning.analysis import (
    main,
    mean_entropy_bits,
    prediction_stats,
    probability_confusion,
    rectifications,
)

LABELS = np.array([0, 1, 1, 2])
BASE = np.array([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.25, 0.75]])
PTR = np.array([[0.4, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_confusion_rows_sum_probabilities_per_true_class():
    matrix = probability_confusion(BASE, LABELS)
    np.testing.assert_allclose(matrix[1], [0.5, 1.5, 0.0])
    stats = prediction_stats(BASE, LABELS)
    assert stats.diagonal_sum == pytest.approx(0.6 + 1.5 + 0.75)
    assert stats.off_diagonal_sum == pytest.approx(4 - 2.85)


def test_entropy_in_bits():
    assert mean_entropy_bits(np.array([[0.5, 0.5], [1.0, 0.0]])) == pytest.approx(0.5)


def test_rectifications_and_cli(tmp_path, capsys):
    true_fix, false_fix = rectifications(BASE, PTR, LABELS)
    assert true_fix.tolist() == [1] and false_fix.tolist() == [0]  # argmax tie -> class 0
    ids = np.array(["a", "b", "c", "d"])
    np.savez(tmp_path / "ft.npz", probabilities=BASE, labels=LABELS, ids=ids)
    order = [3, 2, 1, 0]  # the other run lists the images in another order
    np.savez(tmp_path / "ptr.npz", probabilities=PTR[order], labels=LABELS[order], ids=ids[order])
    assert main([str(tmp_path / "ft.npz"), str(tmp_path / "ptr.npz")]) == 0
    out = capsys.readouterr().out
    assert "true rectifications 1, false rectifications 1" in out and "true: b" in out
