"""``ptr-report`` on fabricated run folders: exact numbers, labels, groups, failures."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from ptr_lightning.results.report import main
from ptr_lightning.results.runs import find_run_dirs, mean_std
from tests.fixtures.run_folders import acc, make_run, make_sweep


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def report_of(tmp_path: Path, capsys, runs) -> str:
    """What ``ptr-report`` prints for a sweep of ``runs`` (``(metrics, config)`` pairs)."""
    assert main([str(make_sweep(tmp_path / "sweep", runs))]) == 0
    return capsys.readouterr().out


@pytest.fixture
def table1(tmp_path: Path) -> Path:
    """digits x resnet18: fine-tuning, PtR-SML1 (three seeds each) and one failed PtR run."""
    sweep = make_sweep(
        tmp_path / "multirun",
        [
            (acc(0.80), {"seed": 0}),
            (acc(0.82), {"seed": 1}),
            (acc(0.84), {"seed": 2}),
            (acc(0.85), {"seed": 0, "regularizer": "ptr"}),
            (acc(0.86), {"seed": 1, "regularizer": "ptr"}),
            (acc(0.87), {"seed": 2, "regularizer": "ptr"}),
        ],
    )
    make_run(
        sweep / "6",
        error="Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n",
        seed=3,
        regularizer="ptr",
    )
    return sweep


def test_mean_and_sample_std() -> None:
    mean, std = mean_std([80.0, 82.0, 84.0])
    assert mean == pytest.approx(82.0) and std == pytest.approx(2.0)
    assert mean_std([75.0]) == (75.0, 0.0)


def test_table_has_exact_mean_std_gain_and_error_rate_reduction(table1, tmp_path, capsys):
    assert main([str(table1)]) == 0
    out = capsys.readouterr().out
    assert (
        "| dataset | backbone | method | n | acc mean (std) | gain | error-rate reduction |" in out
    )
    assert "| digits | resnet18 | ft | 3 | 82.00 (2.00) |  |  | 0,1,2 |" in out
    assert "| digits | resnet18 | ptr-sml1 | 3 | 86.00 (1.00) | +4.00 | 22.22% | 0,1,2 |" in out
    assert "6 runs aggregated in 2 groups; 1 failed or unfinished." in out
    # The failed run is listed with the exception line of its traceback, not dropped.
    assert "## Failed or unfinished runs (1)" in out
    failed = next(line for line in out.splitlines() if str(table1 / "6") in line)
    assert "digits / resnet18 / ptr-sml1, seed 3" in failed
    assert failed.endswith("RuntimeError: CUDA out of memory")

    # --out defaults to the first folder; report.md is what was printed.
    markdown = (table1 / "report.md").read_text()
    assert markdown in out
    assert (
        "| digits | resnet18 | ptr-sml1 | 3 | 86.00 (1.00) | +4.00 | 22.22% | 0,1,2 |" in markdown
    )
    assert "CUDA out of memory" in markdown
    rows = read_csv(table1 / "report.csv")
    assert set(rows) == {"ft", "ptr-sml1"}
    ptr = rows["ptr-sml1"]
    assert int(ptr["n"]) == 3 and ptr["seeds"] == "0 1 2" and ptr["baseline"] == "ft"
    assert float(ptr["mean_pct"]) == pytest.approx(86.0)
    assert float(ptr["std_pct"]) == pytest.approx(1.0)
    assert float(ptr["gain_pp"]) == pytest.approx(4.0)
    assert float(ptr["error_rate_reduction_pct"]) == pytest.approx(100 * 4 / 18)
    assert ptr["regularizer"] == "ptr" and ptr["regression"] == "sml1" and ptr["hparams"]
    assert float(rows["ft"]["mean_pct"]) == pytest.approx(82.0)
    assert float(rows["ft"]["std_pct"]) == pytest.approx(2.0)
    assert rows["ft"]["gain_pp"] == "" and rows["ft"]["error_rate_reduction_pct"] == ""


def test_out_folder_and_several_input_folders(table1, tmp_path, capsys):
    other = make_sweep(tmp_path / "more", [(acc(0.90), {"seed": 0, "regularizer": "ptr"})])
    out_dir = tmp_path / "reports" / "table1"
    assert main([str(table1), str(other), str(table1), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    # The repeated folder is not counted twice: 4 PtR runs, mean of 85, 86, 87, 90.
    assert "| digits | resnet18 | ptr-sml1 | 4 | 87.00 (2.16) | +5.00 | 27.78% | 0,0,1,2 |" in out
    assert "seed 0 repeated" in out
    assert (out_dir / "report.md").is_file() and (out_dir / "report.csv").is_file()
    assert not (table1 / "report.md").exists()


def test_unfinished_run_without_error_file_is_listed(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", [(acc(0.5), {"seed": 0})])
    # Killed before train() wrote config.yaml: only Hydra's copy, with its interpolations.
    killed = sweep / "1" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text(
        "seed: 4\nmodel: {arch: resnet18, weight_decay: 0.0001}\n"
        "dataset: {name: digits}\nchoices: {regularizer: '${hydra:runtime.choices.regularizer}'}\n"
        "paths: {output_dir: '${hydra:runtime.output_dir}'}\n"
    )
    (killed / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices: {regularizer: ptr, regression: l2}\n"
    )
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "## Failed or unfinished runs (1)" in out
    line = next(line for line in out.splitlines() if str(sweep / "1") in line)
    assert "(digits / resnet18 / ptr-l2, seed 4): no metrics.json" in line


def test_runs_differing_in_R_or_m_are_not_averaged_together(tmp_path, capsys):
    runs = [(acc(0.80), {"seed": s}) for s in (0, 1)]
    runs += [(acc(0.84), {"seed": s, "regularizer": "ptr", "R": 1}) for s in (0, 1)]
    runs += [(acc(a), {"seed": s, "regularizer": "ptr", "R": 3}) for s, a in ((0, 0.86), (1, 0.88))]
    runs += [(acc(0.9), {"seed": 0, "regularizer": "ptr", "R": 3.0, "m": 5.0})]
    runs += [(acc(0.83), {"seed": 0, "regularizer": "ptr", "regression": "l2"})]
    out = report_of(tmp_path, capsys, runs)
    assert "| digits | resnet18 | ft | 2 | 80.00 (0.00) |  |  | 0,1 |" in out
    # Only ptr-sml1 was swept, so only its labels carry R and m (3 and 3.0 are one value).
    assert (
        "| digits | resnet18 | ptr-sml1 R=1,m=1 | 2 | 84.00 (0.00) | +4.00 | 20.00% | 0,1 |" in out
    )
    assert (
        "| digits | resnet18 | ptr-sml1 R=3,m=1 | 2 | 87.00 (1.41) | +7.00 | 35.00% | 0,1 |" in out
    )
    assert (
        "| digits | resnet18 | ptr-sml1 R=3,m=5 | 1 | 90.00 (0.00) | +10.00 | 50.00% | 0 |" in out
    )
    assert "| digits | resnet18 | ptr-l2 | 1 | 83.00 (0.00) | +3.00 | 15.00% | 0 |" in out
    assert set(read_csv(tmp_path / "sweep" / "report.csv")) == {
        "ft",
        "ptr-sml1 R=1,m=1",
        "ptr-sml1 R=3,m=1",
        "ptr-sml1 R=3,m=5",
        "ptr-l2",
    }


def test_weight_decay_label_and_baseline(tmp_path, capsys):
    out = report_of(
        tmp_path,
        capsys,
        [
            (acc(0.80), {"seed": 0}),
            (acc(0.70), {"seed": 0, "weight_decay": 0.0}),
            (acc(0.76), {"seed": 0, "weight_decay": 0.0, "regularizer": "ptr"}),
            (acc(0.85), {"seed": 0, "regularizer": "fnp"}),
        ],
    )
    assert "| digits | resnet18 | ft weight_decay=0 | 1 | 70.00 (0.00) |  |  | 0 |" in out
    # Compared with fine-tuning without weight decay: +6 over 70, 6 / 30 = 20 %.
    assert "| ptr-sml1 weight_decay=0 | 1 | 76.00 (0.00) | +6.00 | 20.00% | 0 |" in out
    assert "| fnp-sml1 weight_decay=0.0001 | 1 | 85.00 (0.00) | +5.00 | 25.00% | 0 |" in out


def test_without_a_matching_baseline_there_is_no_gain_and_the_note_says_why(tmp_path, capsys):
    out = report_of(
        tmp_path,
        capsys,
        [
            (acc(0.80), {"seed": 0}),
            (acc(0.74), {"seed": 0, "weight_decay": 0.0, "regularizer": "ptr"}),
            (acc(0.60), {"seed": 0, "regularizer": "l2sp", "arch": "resnet50"}),
        ],
    )
    # The ft run has weight decay, the PtR run none: they are not compared.
    assert "| ptr-sml1 weight_decay=0 | 1 | 74.00 (0.00) |  |  | 0 |" in out
    assert (
        "ptr-sml1 weight_decay=0: no gain: no ft run with the same settings: the ft runs of "
        "digits / resnet18 differ in model.weight_decay" in out
    )
    # No `ft` at all in the resnet50 row: gains blank; l2sp gets no regression suffix.
    assert "| digits | resnet50 | l2sp | 1 | 60.00 (0.00) |  |  | 0 |" in out
    assert "l2sp: no gain: no ft run of digits / resnet50" in out


def test_runs_of_other_epochs_are_never_averaged_or_compared(tmp_path, capsys):
    """An ft run of 6 epochs and a PtR run of 1 epoch: two groups, no gain between them."""
    out = report_of(
        tmp_path,
        capsys,
        [
            (acc(0.80), {"seed": 0, "max_epochs": 6}),
            (acc(0.70), {"seed": 0, "max_epochs": 1, "regularizer": "ptr"}),
            (acc(0.90), {"seed": 1, "max_epochs": 1}),
        ],
    )
    assert "| digits | resnet18 | ft max_epochs=1 | 1 | 90.00 (0.00) |  |  | 1 |" in out
    assert "| digits | resnet18 | ft max_epochs=6 | 1 | 80.00 (0.00) |  |  | 0 |" in out
    assert "| ptr-sml1 max_epochs=1 | 1 | 70.00 (0.00) | -20.00 | -200.00% | 0 |" in out


def test_two_data_sets_in_one_folder_stay_apart(tmp_path, capsys):
    """A digits sweep beside an imagefolder sweep: each data set is its own row."""
    make_sweep(tmp_path / "runs" / "digits", [(acc(0.80), {"seed": s}) for s in (0, 1)])
    make_sweep(
        tmp_path / "runs" / "mine",
        [(acc(0.50), {"seed": s, "dataset": "imagefolder", "lr": 0.001}) for s in (0, 1)],
    )
    assert main([str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "| digits | resnet18 | ft | 2 | 80.00 (0.00) |  |  | 0,1 |" in out
    assert "| imagefolder | resnet18 | ft | 2 | 50.00 (0.00) |  |  | 0,1 |" in out
    assert "4 runs aggregated in 2 groups" in out


def test_metric_switch_and_runs_lacking_the_metric(tmp_path, capsys):
    sweep = make_sweep(
        tmp_path / "sweep",
        [
            (acc(0.80, mean_class=0.70), {"seed": 0}),
            (acc(0.82, mean_class=0.74), {"seed": 1}),
            (acc(0.90), {"seed": 2}),  # an older run without test/mean_class_acc
        ],
    )
    assert main([str(sweep), "--metric", "test/mean_class_acc"]) == 0
    out = capsys.readouterr().out
    assert "# test/mean_class_acc (%)" in out
    assert "| digits | resnet18 | ft | 2 | 72.00 (2.83) |  |  | 0,1 |" in out
    assert "## Failed or unfinished runs (1)" in out
    assert "metrics.json has no 'test/mean_class_acc'" in out
    assert read_csv(sweep / "report.csv")["ft"]["metric"] == "test/mean_class_acc"

    assert main([str(sweep)]) == 0
    assert "| digits | resnet18 | ft | 3 | 84.00 (5.29) |" in capsys.readouterr().out


def test_runs_of_other_settings_are_groups_of_their_own(tmp_path, capsys):
    sweep = make_sweep(
        tmp_path / "sweep", [(acc(0.80), {"seed": 0}), (acc(0.82), {"seed": 1, "lr": 0.01})]
    )
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "| digits | resnet18 | ft lr=0.01 | 1 | 82.00 (0.00) |  |  | 1 |" in out
    assert "| digits | resnet18 | ft lr=0.05 | 1 | 80.00 (0.00) |  |  | 0 |" in out


def test_finds_runs_but_not_inside_them(tmp_path):
    run = make_run(tmp_path / "outputs" / "2026-01-01" / "10-00-00", acc(0.5))
    # W&B's offline folders hold a config.yaml of their own; they are not runs.
    (run / "wandb" / "offline-run-1" / "files").mkdir(parents=True)
    (run / "wandb" / "offline-run-1" / "files" / "config.yaml").write_text("a: 1\n")
    (run / "checkpoints").mkdir()
    make_sweep(tmp_path / "outputs" / "sweep", [(acc(0.5), {}) for _ in range(11)])
    found = find_run_dirs([tmp_path / "outputs"])
    assert found[0] == run
    assert [p.name for p in found[1:]] == [str(job) for job in range(11)]
    assert find_run_dirs([run]) == [run]


def test_no_run_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty" / "wandb").mkdir(parents=True)
    assert main([str(tmp_path / "empty")]) != 0
    assert "no run folder" in capsys.readouterr().err
    assert main([str(tmp_path / "typo")]) != 0
    assert "no such folder" in capsys.readouterr().err


def test_only_failed_runs_is_an_error_but_still_listed(tmp_path, capsys):
    make_run(tmp_path / "sweep" / "0", error="ValueError: bad\n")
    assert main([str(tmp_path / "sweep")]) != 0
    captured = capsys.readouterr()
    assert "ValueError: bad" in captured.out and "none of the 1 run folders" in captured.err


def ptr_run(value: float, switch_epoch: int | None) -> dict[str, Any]:
    return {**acc(value), "pseudo_task": True, "ptr_switch_epoch": switch_epoch}


def test_report_says_how_many_runs_had_the_pseudo_task_on_and_flags_never(tmp_path, capsys):
    out = report_of(
        tmp_path,
        capsys,
        [
            (acc(0.80), {"seed": 0}),
            (ptr_run(0.82, 11), {"seed": 0, "regularizer": "ptr", "R": 3}),
            (ptr_run(0.84, 12), {"seed": 1, "regularizer": "ptr", "R": 3}),
            (ptr_run(0.80, None), {"seed": 0, "regularizer": "ptr", "R": 10}),
            (ptr_run(0.80, None), {"seed": 1, "regularizer": "ptr", "R": 10}),
        ],
    )
    assert "| pseudo-task on |" in out
    assert "| ptr-sml1 R=3,m=1 | 2 | 83.00 (1.41) | +3.00 | 15.00% | 2/2 from ep 11-12 |" in out
    assert "| ptr-sml1 R=10,m=1 | 2 | 80.00 (0.00) | +0.00 | 0.00% | never (0/2) |" in out
    assert (
        "R=10,m=1: the pseudo-task never switched on in any run (latch: the epoch-mean "
        "training CE stayed >= regularizer.T)" in out
    )
    rows = read_csv(tmp_path / "sweep" / "report.csv")
    assert rows["ptr-sml1 R=10,m=1"]["pseudo_task_on_runs"] == "never"
    assert rows["ptr-sml1 R=3,m=1"]["switch_epochs"] == "11 12"
    assert rows["ft"]["pseudo_task_on_runs"] == ""
