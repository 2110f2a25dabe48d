"""``ptr-plots`` and ``ptr-report --plots`` on a digits sweep: every figure; unlike runs apart."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from ptr_lightning.model.prediction_metrics import expected_calibration_error, reliability_bins
from ptr_lightning.results import plots, report
from ptr_lightning.results.runs import group_runs, load_runs
from tests.fixtures.cli import job_folders
from tests.fixtures.run_folders import acc, make_run

PNG = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_figure_is_written_with_its_numbers(digits_sweep, tmp_path, capsys):
    out = tmp_path / "figures"
    assert plots.main([str(digits_sweep.ptr), str(digits_sweep.ft), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" not in printed
    for name in plots.FIGURES:
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(PNG) and len(png) > 5000, name
        assert read_csv(out / f"{name}.csv"), name

    ft = json.loads((digits_sweep.ft / "metrics.json").read_text())
    cells = {(row["R"], row["m"]): row for row in read_csv(out / "heatmap_R_m.csv")}
    assert len(cells) == 4
    for job in job_folders(digits_sweep.ptr):
        metrics = json.loads((job / "metrics.json").read_text())
        regularizer = OmegaConf.load(job / "config.yaml").regularizer
        cell = cells[(str(float(regularizer.R)), str(float(regularizer.m)))]
        assert float(cell["mean_pct"]) == pytest.approx(100 * metrics["test/acc"])
        assert float(cell["ft_mean_pct"]) == pytest.approx(100 * ft["test/acc"])
        assert cell["n"] == "1"

    # The learning curves end at each run's last val/acc (one seed: the mean is the run's).
    curves = read_csv(out / "learning_curves.csv")
    last_ft = [r for r in curves if r["method"] == "ft" and r["metric"] == "val/acc"][-1]
    assert float(last_ft["mean"]) == pytest.approx(ft["val/acc"])
    assert float(last_ft["epoch"]) == ft["epochs"] - 1  # epochs count from 0 in the logs

    # Telemetry: the switch is marked at the first step the pseudo-task was on (T=100: after
    # the first epoch's 3 steps).
    telemetry = read_csv(out / "ptr_telemetry.csv")
    assert {r["metric"] for r in telemetry} >= {"ptr/w", "ptr/g_ce", "ptr/g_ptr", "switch_step"}
    assert {r["step"] for r in telemetry if r["metric"] == "switch_step"} == {"3.0"}

    # Per-class gain and the Section 4 figures compare ft with a PtR run of the same images.
    gain = read_csv(out / "per_class_gain.csv")
    assert sorted(r["class"] for r in gain) == ["0", "1", "2"]
    assert [float(r["gain_pp"]) for r in gain] == sorted(
        (float(r["gain_pp"]) for r in gain), reverse=True
    )
    (pair,) = read_csv(out / "rectifications.csv")
    labels = np.load(digits_sweep.ft / "predictions.npz")["labels"]
    assert int(pair["images"]) == len(labels)
    ece = {r["method"]: float(r["ece"]) for r in read_csv(out / "reliability.csv")}
    ft_probs = np.load(digits_sweep.ft / "predictions.npz")["probabilities"]
    assert ece["ft"] == pytest.approx(expected_calibration_error(ft_probs, labels))


def test_diagnosis_figure_shows_each_methods_telemetry_against_one_over_r(digits_sweep):
    """Per method its own runs' telemetry; the push ratios beside 1/R; ft's features and CE
    (it has no pseudo-task); the CE cut to the steps around the switch."""
    from ptr_lightning.results.curves import read_series

    groups = group_runs(load_runs([digits_sweep.ptr, digits_sweep.ft]))
    plot = plots.make("ptr_diagnosis", groups)
    rows = [dict(zip(plot.columns, row, strict=True)) for row in plot.rows]

    def drawn(method, metric):
        return {
            r["step"]: r["mean"] for r in rows if (r["method"], r["metric"]) == (method, metric)
        }

    ft = read_series(digits_sweep.ft)
    assert drawn("ft", "feat/mean") == dict(
        zip(ft["feat/mean"].step, ft["feat/mean"].value, strict=True)
    )
    assert set(drawn("ft", "grad/coherence_ce")) == {0, 3}  # one measured step per epoch
    assert not drawn("ft", "grad/sum_ptr / grad/sum_ce") and not drawn("ft", "ptr/pull_frac")
    assert set(drawn("ft", "train/ce")) == set(range(6))  # every step: the CE's window
    for job in job_folders(digits_sweep.ptr):
        series, regularizer = read_series(job), OmegaConf.load(job / "config.yaml").regularizer
        (label,) = {g.label for g in groups if job in [r.path for r in g.runs]}
        summed_ce = dict(zip(series["grad/sum_ce"].step, series["grad/sum_ce"].value, strict=True))
        push = series["grad/sum_ptr"].value[0] / summed_ce[3]  # the pseudo-task on from step 3
        assert drawn(label, "grad/sum_ptr / grad/sum_ce") == {3: pytest.approx(push)}
        assert drawn(label, "1/R (grad/sum_ptr / grad/sum_ce)") == {"": 1 / regularizer.R}
        assert drawn(label, "ptr/m")[3] == regularizer.m  # the targets' mean beside feat/mean
        assert 0 < drawn(label, "ptr/pull_frac")[3] < 1
    panel = plot.figure.axes[4]
    assert panel.get_title().startswith("grad/sum_ptr / grad/sum_ce")
    one_over_r = {line.get_ydata()[0] for line in panel.get_lines() if line.get_linestyle() == ":"}
    assert one_over_r == {1.0, 1 / 3}  # R = 1 and 3, dotted beside the ratios


def test_a_figure_without_its_inputs_is_skipped_with_one_line(digits_sweep, tmp_path, capsys):
    """The report's --plots on the PtR sweep alone: no fine-tuning run to compare with."""
    assert report.main([str(digits_sweep.ptr), "--out", str(tmp_path), "--plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 4
    assert all("no fine-tuning (ft) run has predictions.npz" in line for line in skipped)
    for name in ("learning_curves", "ptr_telemetry", "heatmap_R_m"):
        assert (tmp_path / "plots" / f"{name}.png").is_file()
    assert not (tmp_path / "plots" / "reliability.png").exists()


def test_reliability_bins_give_torchmetrics_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 6)) * 4
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities[:7] = np.eye(6)[0]  # confidence exactly 1: torchmetrics' own bin
    labels = rng.integers(0, 6, 500)
    bins = reliability_bins(probabilities, labels)
    assert bins.count.sum() == 500 and bins.count[-1] == 7
    assert bins.ece == pytest.approx(expected_calibration_error(probabilities, labels), abs=1e-6)


def with_curve(folder, val_acc):
    """A fabricated run's csv/metrics.csv: one val/acc per epoch."""
    (folder / "csv").mkdir()
    rows = "".join(f"{epoch},{epoch},{value}\n" for epoch, value in enumerate(val_acc))
    (folder / "csv" / "metrics.csv").write_text("epoch,step,val/acc\n" + rows)


def test_learning_curves_keep_other_data_sets_and_epochs_apart(tmp_path, capsys):
    """Two data sets and two epoch counts below one folder: four curves of one run each, never
    one "ft (n=4)"."""
    runs = {
        "digits6": ({"max_epochs": 6}, [0.5, 0.7]),
        "digits1": ({"max_epochs": 1}, [0.4]),
        "mine6": ({"max_epochs": 6, "dataset": "imagefolder"}, [0.2, 0.3]),
        "mine1": ({"max_epochs": 1, "dataset": "imagefolder"}, [0.1]),
    }
    for name, (config, curve) in runs.items():
        with_curve(make_run(tmp_path / "runs" / name, acc(curve[-1]), **config), curve)
    assert plots.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    curves = read_csv(tmp_path / "out" / "learning_curves.csv")
    last = {row["method"]: (row["n"], float(row["mean"])) for row in curves}
    assert last == {
        "digits / resnet18 / ft max_epochs=1": ("1.0", 0.4),
        "digits / resnet18 / ft max_epochs=6": ("1.0", 0.7),
        "imagefolder / resnet18 / ft max_epochs=1": ("1.0", 0.1),
        "imagefolder / resnet18 / ft max_epochs=6": ("1.0", 0.3),
    }


def test_heat_map_marks_a_cell_whose_pseudo_task_never_switched_on(tmp_path):
    on = {"pseudo_task": True, "ptr_switch_epoch": 3}
    never = {"pseudo_task": True, "ptr_switch_epoch": None}
    make_run(tmp_path / "runs" / "ft", acc(0.80))
    make_run(tmp_path / "runs" / "a", {**acc(0.84), **on}, regularizer="ptr", R=1)
    make_run(tmp_path / "runs" / "b", {**acc(0.80), **never}, regularizer="ptr", R=10)
    groups = group_runs(load_runs([tmp_path / "runs"]))
    plot = plots.make("heatmap_R_m", groups)
    cells = {row[3]: row for row in plot.rows}  # by R
    assert cells[1.0][-1] == "1/1" and cells[10.0][-1] == "0/1"
    assert cells[1.0][-2] == pytest.approx(4.0)  # gain over the ft run
    (ax, _colorbar) = plot.figure.axes
    texts = [t.get_text() for t in ax.texts]
    assert sum("never on" in t for t in texts) == 1
    assert [p.get_hatch() for p in ax.patches] == ["xx"]
