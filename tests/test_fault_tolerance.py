"""Interrupted runs resume exactly; SIGTERM checkpoints; non-finite losses stop cleanly;
W&B problems never stop training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ptr_lightning.errors import ConfigError, NonFiniteLossError
from ptr_lightning.train import train
from tests.conftest import TINY

# Deterministic on CPU, PtR on after the first epoch, enough epochs to interrupt the run.
RUN = [
    *TINY,
    "trainer.deterministic=true",
    "regularizer.T=100",
    "trainer.max_epochs=8",
    "seed=7",
    "model.lr=0.002",
]  # a rate at which this tiny run learns rather than saturates


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ptr_lightning", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_checkpoints(ckpt: Path, count: int, proc: subprocess.Popen, timeout=240) -> None:
    """Wait until ``ckpt`` has been (atomically) replaced ``count`` times."""
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no checkpoint in time"
        try:
            stat = ckpt.stat()
            seen.add((stat.st_ino, stat.st_mtime_ns))
        except FileNotFoundError:
            pass
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout=300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    return output


def test_killed_run_resumes_to_exactly_the_same_result(tmp_path):
    victim = tmp_path / "victim"
    killed = start([*RUN, f"hydra.run.dir={victim}"], tmp_path)
    wait_for_checkpoints(victim / "checkpoints" / "last.ckpt", 2, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    ckpt = torch.load(victim / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["regularizer._extra_state"]["active"], "kill after the PtR switch"
    assert ckpt["epoch"] < 8 and not (victim / "metrics.json").exists()

    resumed = start([f"resume={victim}", f"hydra.run.dir={tmp_path / 'resume-log'}"], tmp_path)
    assert resumed.wait(timeout=300) == 0, finish(resumed)
    whole = start([*RUN, f"hydra.run.dir={tmp_path / 'whole'}"], tmp_path)
    assert whole.wait(timeout=300) == 0, finish(whole)

    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    actual = json.loads((victim / "metrics.json").read_text())
    for key in ("test/acc", "test/mean_class_acc", "val/acc", "val/loss", "epochs"):
        assert actual[key] == expected[key], key
    assert actual["ptr_switch_epoch"] == expected["ptr_switch_epoch"] == 0
    assert expected["val/loss"] < 5 and expected["test/acc"] > 0.34  # a model, not a collapse
    assert (victim / "csv" / "metrics.before-resume-1.csv").is_file()  # nothing lost


def test_sigterm_writes_a_checkpoint_before_exiting(tmp_path):
    run = tmp_path / "run"
    proc = start([*TINY, "trainer.max_epochs=200", f"hydra.run.dir={run}"], tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    wait_for_checkpoints(ckpt, 1, proc)
    time.sleep(0.3)  # somewhere inside a later epoch
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    output = finish(proc, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]  # never taken for finished
    assert "SIGTERM: checkpoint written" in output
    assert "SIGTERM" in (run / "error.txt").read_text()
    assert ckpt.stat().st_mtime >= signalled
    state = torch.load(ckpt, weights_only=True)
    steps_per_epoch = 3  # 24 training images in batches of 8
    assert state["global_step"] % steps_per_epoch != 0 or state["epoch"] > 0

    resumed = start(
        [f"resume={run}", "trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path
    )
    assert resumed.wait(timeout=300) == 0, finish(resumed)
    assert (run / "metrics.json").is_file()


def test_resume_refuses_a_folder_without_a_checkpoint(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        train(make_cfg(f"resume={tmp_path}"))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(make_cfg):
    cfg = make_cfg("model.lr=1e3", "trainer.max_epochs=3")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step \d+ \(epoch 1.*train/ce"
    ):
        train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0  # written at the end of epoch 0, before the bad step
    assert all(
        torch.isfinite(t).all()
        for t in ckpt["state_dict"].values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def test_wandb_offline_run_lands_beside_the_csv(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=1")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert list((run / "wandb").glob("offline-run-*"))
    assert (run / "csv" / "metrics.csv").is_file()


def test_wandb_that_cannot_start_leaves_the_csv_logger(make_cfg, monkeypatch):
    import lightning.pytorch.loggers as loggers

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("api.wandb.ai unreachable")

    monkeypatch.setattr(loggers, "WandbLogger", Broken)
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=1")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").is_file()
