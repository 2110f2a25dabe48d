"""The Section 4 analysis on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from ptr_lightning.results.analysis import (
    main,
    mean_entropy_bits,
    pair_runs,
    prediction_stats,
    probability_confusion,
    rectifications,
)
from ptr_lightning.results.runs import find_run_dirs, load_run
from tests.fixtures.run_folders import make_run

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


def make_run_with_predictions(folder, probabilities, **config):
    """A finished run folder (config.yaml as train.py writes it) with ``predictions_val.npz``."""
    make_run(folder, metrics={"test/acc": 0.5}, **config)
    ids = np.array(["a", "b", "c", "d"])
    np.savez(folder / "predictions_val.npz", probabilities=probabilities, labels=LABELS, ids=ids)
    return folder


def test_over_seeds_each_method_is_paired_with_fine_tuning_of_its_seed(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # seeds 0 and 2: PtR changes the predictions as PTR does; seed 1: not at all.
    for seed, ptr in ((0, PTR), (1, BASE), (2, PTR)):
        make_run_with_predictions(sweep / f"ft{seed}", BASE, seed=seed)
        make_run_with_predictions(sweep / f"ptr{seed}", ptr, seed=seed, regularizer="ptr")
    make_run_with_predictions(sweep / "ptr3", PTR, seed=3, regularizer="ptr")  # no ft of seed 3
    make_run_with_predictions(sweep / "l2sp0", PTR, seed=0, regularizer="l2sp")
    make_run_with_predictions(sweep / "ft4", BASE, seed=4)
    make_run(
        sweep / "ptr4_failed", error="Traceback\nRuntimeError: boom", seed=4, regularizer="ptr"
    )

    groups, left_out = pair_runs([load_run(p) for p in find_run_dirs([sweep])], "val")
    assert [(g.label, g.seeds) for g in groups] == [("l2sp", [0]), ("ptr-sml1", [0, 1, 2])]
    ptr = groups[1].comparisons
    assert [c.baseline.diagonal_sum for c in ptr] == pytest.approx([2.85] * 3)
    assert [c.regularized.diagonal_sum for c in ptr] == pytest.approx([3.4, 2.85, 3.4])
    assert [(len(c.true_fixes), len(c.false_fixes)) for c in ptr] == [(1, 1), (0, 0), (1, 1)]
    assert [c.true_fixes.tolist() for c in ptr] == [["b"], [], ["b"]]
    reasons = {path.name: reason for path, reason in left_out}
    assert reasons["ptr3"] == "no ft run of seed 3 in digits / resnet18 / ft"
    assert "predictions_val.npz not found" in reasons["ptr4_failed"]
    assert "(ptr4_failed failed: RuntimeError: boom)" in reasons["ptr4_failed"]
    assert reasons["ft4"] == "no other method's run to compare with"

    assert main([str(sweep), "--split", "val"]) == 0
    out = capsys.readouterr().out
    # Accuracy 75% for both in every pair; rectifications 1, 0, 1 each: 0.67 (0.58).
    assert "| digits | resnet18 | ptr-sml1 | 3 | 4 | 75.00 (0.00) -> 75.00 (0.00) |" in out
    assert "| 0.7 (0.6) | 0.7 (0.6) | 0,1,2 |" in out
    assert "## Runs left out (3)" in out


def test_two_run_folders_keep_the_per_image_form(tmp_path, capsys):
    ft = make_run_with_predictions(tmp_path / "ft", BASE)
    ptr = make_run_with_predictions(tmp_path / "ptr", PTR, regularizer="ptr")
    assert main([str(ft), str(ptr), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "4 val images, 3 classes" in out and "true: b" in out and "false: a" in out
