"""The command line: `python -m ptr_lightning` and a Hydra multirun, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import TINY
from tests.fixtures.cli import job_folders, run_cli


def test_single_run_prints_accuracy_and_writes_its_folder(tmp_path):
    result = run_cli(*TINY, "regularizer.T=100", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "test/acc" in result.stdout and "pseudo-task on since epoch 0" in result.stdout
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow  # minutes on 2 cores; tests/model/test_families.py builds and steps each family
@pytest.mark.parametrize(
    "model",
    [
        ["model=vit_b_16"],
        ["model=convnext_tiny"],
        ["model=timm", "model.name=convnext_tiny.fb_in22k"],
    ],
    ids=["vit_b_16", "convnext_tiny", "timm"],
)
def test_a_modern_family_fine_tunes_on_digits_from_the_command_line(tmp_path, model):
    pytest.importorskip("timm")
    run = tmp_path / "run"
    overrides = ["model.weights=null", "dataset.image_size=32", "trainer.max_epochs=2"]
    result = run_cli(*model, *overrides, f"hydra.run.dir={run}", cwd=tmp_path, timeout=1200)
    assert "test/acc" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.slow  # a folder per job is also checked by the shared W&B sweep and ptr_diagnosis
def test_multirun_runs_every_combination_in_its_own_folder(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(
        "-m",
        *TINY,
        "trainer.max_epochs=1",
        "regularizer.R=1,3",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    jobs = job_folders(sweep)
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert "test/acc" in json.loads((job / "metrics.json").read_text())
        config = (job / "config.yaml").read_text()
        seen.add(
            (
                next(line for line in config.splitlines() if line.startswith("  R:")),
                next(line for line in config.splitlines() if line.startswith("seed:")),
            )
        )
    assert len(seen) == 4


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "ptr-lightning"
    result = subprocess.run(
        [str(script), "--cfg", "job", "model=resnet50"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "arch: resnet50" in result.stdout


TOOLS = {
    "ptr-report": "ptr_lightning.results.report",
    "ptr-plots": "ptr_lightning.results.plots",
    "ptr-analysis": "ptr_lightning.results.analysis",
    "ptr-workspace": "ptr_lightning.tracking.workspace",
}


def test_every_tool_is_a_console_script_and_a_python_m_module():
    bin_dir = Path(sys.executable).parent
    commands = {script: [str(bin_dir / script), "--help"] for script in TOOLS}
    commands |= {module: [sys.executable, "-m", module, "--help"] for module in TOOLS.values()}
    started = {
        name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in commands.items()
    }
    for script, module in TOOLS.items():
        for name in (script, module):
            out, err = started[name].communicate(timeout=120)
            assert started[name].returncode == 0, err[-2000:]
            assert f"usage: {script}" in out  # one program name, whichever way it started


def test_non_editable_install_carries_the_configs(tmp_path):
    """A wheel has no top-level conf/: the configs must travel inside the package."""
    target = tmp_path / "site"
    repo = Path(__file__).parents[1]
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert not (target / "conf").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-m", "ptr_lightning", "--cfg", "job", "dataset=cub200", "model=vgg16"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "arch: vgg16" in result.stdout and "reader: cub200" in result.stdout
    located = subprocess.run(
        [sys.executable, "-c", "import ptr_lightning.core.config_dir as p; print(p.CONFIG_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(located.stdout.strip()) == target / "ptr_lightning" / "conf"


def test_a_failing_job_is_recorded_the_sweep_goes_on_and_then_exits_non_zero(tmp_path):
    sweep = tmp_path / "sweep"
    # R=-1 is refused by the config check: that job fails, the R=3 job still runs.
    result = run_cli(
        "-m",
        *TINY,
        "trainer.max_epochs=1",
        "regularizer.R=-1,3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        succeed=False,
    )
    failed, ok = sweep / "0", sweep / "1"
    assert "regularizer.R=-1" in (failed / "error.txt").read_text()
    assert not (failed / "metrics.json").exists()
    assert (ok / "metrics.json").is_file() and not (ok / "error.txt").exists()
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"1 of 2 jobs failed (their error.txt: 0 in {sweep})" in result.stderr


def test_a_failing_single_run_exits_non_zero_and_keeps_its_error(tmp_path):
    """A run that starts, then fails (its data is not there), keeps its traceback."""
    result = run_cli(
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'no_data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        succeed=False,
    )
    assert result.returncode == 1
    assert "DatasetError" in result.stderr and "Traceback" not in result.stderr
    assert "DatasetError" in (tmp_path / "run" / "error.txt").read_text()


def test_optuna_search_ranks_only_trials_whose_pseudo_task_switched_on(tmp_path):
    sweep = tmp_path / "search"
    result = run_cli(
        "hparams_search=ptr_optuna",
        "hydra.sweeper.n_trials=4",
        *TINY,
        "trainer.max_epochs=1",
        "regularizer.T=choice(0.0,100.0)",  # T=0: the pseudo-task can never switch on
        "hydra.sweeper.sampler.seed=0",  # draws T = 0, 100, 0, 100
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    trials = [json.loads((t / "metrics.json").read_text()) for t in job_folders(sweep)]
    assert len(trials) == 4
    never = [t for t in trials if t["ptr_switch_epoch"] is None]
    assert len(never) == 2
    output = result.stdout + result.stderr
    assert output.count("Failed experiment") == len(never)
    assert "the pseudo-task never switched on" in output
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"]["regularizer.T"] == 100.0
    assert "regularizer.R" in results["best_params"]


@pytest.mark.slow  # the report over a real sweep is also checked by the ptr_diagnosis test
def test_multirun_of_two_methods_then_the_report(tmp_path, capsys):
    from ptr_lightning.results.report import main as report

    sweep = tmp_path / "sweep"
    run_cli(
        "-m",
        *TINY,
        "trainer.max_epochs=2",
        "method=ft,ptr_sml1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert report([str(sweep)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| digits | resnet18 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["ft", "ptr-sml1"]
    assert all(row.split("|")[4].strip() == "2" for row in rows)
    ft_accs = [
        json.loads((job / "metrics.json").read_text())["test/acc"]
        for job in job_folders(sweep)
        if OmegaConf.load(job / "config.yaml").choices.regularizer == "none"
    ]
    assert len(ft_accs) == 2
    assert f"{100 * sum(ft_accs) / 2:.2f}" in rows[0]
    assert (sweep / "report.md").is_file() and (sweep / "report.csv").is_file()


def test_single_run_with_ddp_on_two_cpu_processes(tmp_path):
    run, probe = tmp_path / "ddp", tmp_path / "ranks"
    result = run_cli(
        *TINY,
        "trainer.max_epochs=2",
        "regularizer.T=100",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "+callbacks.probe._target_=tests.probes.RecordPerRank",
        f"+callbacks.probe.folder={probe}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert "pseudo-task on since epoch 0" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ptr_active"] is True and 0.0 <= metrics["test/acc"] <= 1.0
    # Each rank has its own half of the batch, yet all take the same w and switch together.
    rank0, rank1 = (json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["w"] and rank0["w"] == rank1["w"]
    assert rank0["switch_epoch"] == rank1["switch_epoch"] == 0

    # The predictions gathered from both ranks are those of one process testing the same model:
    # every test image once, in the data set's order, and the same accuracy.
    single = evaluate_in_one_process(run)
    with np.load(run / "predictions.npz") as saved:
        np.testing.assert_allclose(saved["probabilities"], single["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(saved["labels"], single["labels"])
        assert len(set(saved["ids"].tolist())) == len(saved["ids"]) == len(single["labels"])
    assert metrics["test/acc"] == pytest.approx(single["test/acc"])


def evaluate_in_one_process(run: Path) -> dict:
    """Test the run's final checkpoint in this process, on one device."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from ptr_lightning.run.build import build_module

    cfg = OmegaConf.load(run / "config.yaml")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    probs, labels = (torch.cat(p) for p in zip(*module.predictions["test"], strict=True))
    return {"probabilities": probs.numpy(), "labels": labels.numpy(), **metrics}


def test_ptr_diagnosis_sweep_runs_fine_tuning_once_and_the_report_labels_the_variants(
    tmp_path, capsys
):
    from ptr_lightning.results.report import main as report

    sweep = tmp_path / "sweep"
    run_cli(
        "-m",
        "experiment=ptr_diagnosis",
        *TINY,
        "trainer.max_epochs=1",
        "seed=0",
        "regularizer.R=3",
        "regularizer.m_mode=absolute",
        "regularizer.switch=latch",
        "regularizer.targets=constant,centred",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert len(job_folders(sweep)) == 4  # ft once, two PtR variants, FNP
    assert report([str(sweep)]) == 0
    rows = {
        line.split(" | ")[2]: line.split(" | ")[3]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| digits")
    }
    # A label names only what varies: the targets (R and m are the same in every PtR run).
    assert rows == {
        "ft": "1",
        "ptr-sml1 targets=centred": "1",
        "ptr-sml1 targets=constant": "1",
        "fnp-sml1": "1",
    }
