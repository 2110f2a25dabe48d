"""The results tools on what users have on disk: broken files, unlike runs, typos. Each names the
file or the key and goes on with the rest; none prints a traceback."""

from __future__ import annotations

import numpy as np

from ptr_lightning.results import analysis, plots, report
from tests.fixtures.run_folders import acc, make_run

LABELS = np.array([0, 1, 1, 2])
IDS = np.array(["a", "b", "c", "d"])


def run_with_predictions(folder, seed, regularizer="none", ids=IDS):
    make_run(folder, metrics=acc(0.5), seed=seed, regularizer=regularizer)
    probabilities = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.2 / 3
    names = np.array(["x", "y", "z"])
    np.savez(
        folder / "predictions.npz",
        probabilities=probabilities,
        labels=LABELS,
        ids=ids,
        class_names=names,
    )
    return folder


def test_plots_name_a_broken_predictions_file_and_draw_the_other_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        run_with_predictions(runs / f"ft{seed}", seed)
        run_with_predictions(runs / f"ptr{seed}", seed, "ptr")
    truncated = runs / "ptr1" / "predictions.npz"
    truncated.write_bytes(truncated.read_bytes()[:40])
    objects = runs / "ft2" / "predictions.npz"
    np.savez(objects, probabilities=np.array([{"not": "numbers"}], dtype=object), labels=LABELS)
    assert plots.main([str(runs), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"left out {truncated}: {truncated} cannot be read" in printed
    assert f"left out {objects}: {objects} cannot be read" in printed  # no pickles
    # Every figure of the predictions, from the readable runs (these runs logged no curves).
    for name in ("per_class_gain", "entropy_histogram", "rectifications", "reliability"):
        assert f"skipped {name}" not in printed and (tmp_path / "out" / f"{name}.png").is_file()
    (pair_0,) = [  # seed 0 only: seed 1's PtR and seed 2's ft file are broken
        line for line in (tmp_path / "out" / "rectifications.csv").read_text().splitlines()[1:]
    ]
    assert pair_0.startswith("0,4,")


def test_runs_that_tested_other_images_are_not_compared(tmp_path, capsys):
    runs = tmp_path / "runs"
    run_with_predictions(runs / "ft", 0)
    run_with_predictions(runs / "ptr", 0, "ptr", ids=np.array(["w", "x", "y", "z"]))
    assert analysis.main([str(runs / "ft"), str(runs / "ptr")]) == 1
    assert "tested different images" in capsys.readouterr().err
    assert analysis.main([str(runs)]) == 1
    assert "ptr: the two runs tested different images" in capsys.readouterr().err
    assert plots.main([str(runs), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "skipped rectifications.png: no ft and ptr-sml1 runs of one seed tested" in printed


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, capsys):
    runs = tmp_path / "runs"
    run_with_predictions(runs / "ft", 0)
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder\n")
    assert plots.main([str(runs), "--out", str(blocked / "figures")]) == 1
    assert f"plots: cannot write into {blocked / 'figures'}" in capsys.readouterr().err
    assert report.main([str(runs), "--out", str(blocked / "tables")]) == 1
    assert f"report: cannot write into {blocked / 'tables'}" in capsys.readouterr().err


def test_an_empty_folder_and_an_unknown_metric_say_so_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert analysis.main([str(tmp_path / "empty")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "analysis: no pair" in err

    make_run(tmp_path / "runs" / "ft", acc(0.8))
    assert report.main([str(tmp_path / "runs"), "--metric", "test/bogus"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        "no run has the metric 'test/bogus'; the runs' metrics.json have test/acc, val/acc" in err
    )
