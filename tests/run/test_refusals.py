"""A known mistake is refused before anything is written, in a few lines, with what to do.

The command line is run in this process (``ptr_lightning.__main__.main`` with its arguments):
Hydra composes, the preflight callback checks, and a refused command must leave no folder and no
file behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hydra.core.global_hydra import GlobalHydra

from ptr_lightning.core import names
from ptr_lightning.core.errors import RunFolderError
from tests.conftest import cli_env
from tests.fixtures.run_folders import acc, make_run


def refused(argv: list[str], cwd: Path, monkeypatch, capsys) -> str:
    """``python -m ptr_lightning *argv`` in ``cwd``: it must exit 1; what it printed."""
    from ptr_lightning.__main__ import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["ptr_lightning", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    GlobalHydra.instance().clear()
    assert stop.value.code == 1
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err + printed.out
    return printed.err


def files_below(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_bad_settings_are_refused_naming_the_key_and_write_nothing(tmp_path, monkeypatch, capsys):
    cases = {
        "regularizer.R=nan": "regularizer.R=nan is not a number: it must be a finite number > 0",
        "+regularizer.Rr=3": "regularizer.Rr: not a setting of PseudoTask; its settings are "
        "regularizer.R, regularizer.m",
        "seed=abc": "seed='abc' is not an integer: it must be >= 0",
        "dataset.batch_size=0": "dataset.batch_size=0 is not allowed: it must be >= 1",
    }
    for override, message in cases.items():
        assert message in refused([override], tmp_path, monkeypatch, capsys), override
    assert [p.name for p in tmp_path.iterdir()] == []  # no outputs/<time>/ with an error.txt


def test_a_bad_regularizer_value_is_refused_before_torchvision_and_lightning_load(tmp_path):
    """The fast path of the seed and regularizer checks (docs/run-folders.md gives its times)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ptr_lightning"]
        + ["dataset=flower102", "regularizer.R=nan"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "regularizer.R=nan is not a number" in result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "torch" in imported and not imported & {"torchvision", "lightning"}


def test_a_resume_that_cannot_be_is_refused_and_writes_nothing(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "typo"
    err = refused([f"resume={missing}"], tmp_path, monkeypatch, capsys)
    assert f"resume={missing}" in err and not missing.exists()

    data = tmp_path / "my_images"  # a data folder given by mistake
    (data / "train" / "a").mkdir(parents=True)
    (data / "train" / "a" / "1.png").write_bytes(b"png")
    before = files_below(data)
    assert "does not exist" in refused([f"resume={data}"], tmp_path, monkeypatch, capsys)
    assert files_below(data) == before and not (data / ".hydra").exists()

    run = make_run(tmp_path / "finished", acc(0.8))
    (run / names.LAST_CHECKPOINT).parent.mkdir()
    (run / names.LAST_CHECKPOINT).write_bytes(b"PK\x03\x04")
    before = files_below(run)
    err = refused([f"resume={run}", "dataset.classes=[1,2]"], tmp_path, monkeypatch, capsys)
    assert "would change what the run trains on" in err
    assert files_below(run) == before  # no error.txt, no .hydra/resume-*, no log


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(
    tmp_path, monkeypatch, capsys
):
    run = make_run(tmp_path / "run", acc(0.8))
    before = files_below(run)
    err = refused([f"hydra.run.dir={run}"], tmp_path, monkeypatch, capsys)
    assert f"{run} holds a run (config.yaml, metrics.json)" in err
    assert f"resume={run} continues it; overwrite=true" in err
    assert files_below(run) == before


def test_overwrite_replaces_the_earlier_run_and_says_what(make_cfg, caplog):
    from ptr_lightning.run.train import train

    cfg = make_cfg("trainer.max_epochs=1", "regularizer=none")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / names.WANDB_RUN_ID_FILE).write_text("old-run\n")  # would continue the old W&B run
    metrics = train(make_cfg("trainer.max_epochs=1", "regularizer=none", "overwrite=true"))
    assert "overwrite=true: replacing the earlier run's config.yaml, metrics.json" in caplog.text
    assert not (run / names.WANDB_RUN_ID_FILE).exists()
    assert (run / names.METRICS_FILE).read_text().count("test/acc") == 2  # test/acc, _1crop
    assert metrics["epochs"] == 1

    # Its config says overwrite=true: a resume continues the run, it never replaces it.
    resumed = train(make_cfg(f"resume={run}"), ["trainer.max_epochs=2"])
    assert resumed["epochs"] == 2 and (run / names.LAST_CHECKPOINT).is_file()
    with pytest.raises(RunFolderError, match="overwrite=true would delete ckpt_path="):
        train(make_cfg(f"ckpt_path={run / names.LAST_CHECKPOINT}", "overwrite=true"))
    assert (run / names.LAST_CHECKPOINT).is_file()


def test_other_data_parallel_ranks_never_replace_rank_zeros_files(tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from ptr_lightning.run.run_folder import replace_outputs

    run = make_run(tmp_path / "run", acc(0.8))
    before = files_below(run)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    replace_outputs(run)
    assert files_below(run) == before


def test_a_live_run_folder_is_refused_before_its_files_are_touched(tmp_path, monkeypatch, capsys):
    run = tmp_path / "live"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("the live run's config\n")
    with FileLock(run / names.LOCK_FILE, timeout=0):  # held as the live run holds it
        before = files_below(run)
        err = refused([f"hydra.run.dir={run}"], tmp_path, monkeypatch, capsys)
        assert "another run is using" in err and names.ERROR_FILE not in err
        assert files_below(run) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_gpu_settings_without_a_gpu_are_refused_saying_which_preset(tmp_path, monkeypatch, capsys):
    for argv in (["trainer=gpu"], ["trainer=ddp"], ["model.compile=reduce-overhead"]):
        err = refused(argv, tmp_path, monkeypatch, capsys)
        assert "this machine has no CUDA GPU" in err and "trainer=default" in err, argv
    assert not any(tmp_path.iterdir())


def test_a_resumed_finished_run_keeps_every_metric_and_sums_its_seconds(make_cfg):
    from ptr_lightning.run.train import train

    cfg = make_cfg("trainer.max_epochs=1", "regularizer=none")
    first = train(cfg)
    run = Path(cfg.paths.output_dir)
    again = train(make_cfg(f"resume={run}"))  # nothing left to train: tested again
    assert {names.VAL_ACC, names.VAL_LOSS} <= again.keys()
    assert again[names.VAL_ACC] == first[names.VAL_ACC]
    assert again[names.TEST_ACC] == first[names.TEST_ACC]
    assert again["seconds"] > first["seconds"]  # both processes
