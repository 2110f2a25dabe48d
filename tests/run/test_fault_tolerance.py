"""Interrupted runs resume exactly; signals, full disks and bad checkpoints end clearly;
non-finite losses stop cleanly; W&B problems never stop training. Through the CLI, in
subprocesses, where processes, signals or file systems are involved."""

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

from ptr_lightning.core import names
from ptr_lightning.core.errors import CheckpointError, ConfigError, NonFiniteLossError
from ptr_lightning.run.train import train
from tests.conftest import TINY, cli_env
from tests.fixtures.sweeps import offline_wandb_env
from tests.fixtures.wandb_files import offline_runs

# Deterministic on CPU, at a rate at which this tiny run learns rather than saturates; the
# pseudo-task switches on at the end of epoch 1 (epoch-mean CE 1.06, then 0.94 < T = 1).
RUN = [*TINY, "trainer.deterministic=true", "trainer.max_epochs=5", "seed=7", "model.lr=0.002"]


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ptr_lightning", *args],
        cwd=cwd,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout=300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    return output


def completed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = start(args, cwd, env)
    output = finish(proc)
    return proc.returncode, output


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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The metrics of the run that nothing interrupts, to compare resumed runs with."""
    folder = tmp_path_factory.mktemp("whole")
    code, output = completed([*RUN, f"hydra.run.dir={folder / 'run'}"], folder)
    assert code == 0, output[-3000:]
    metrics = json.loads((folder / "run" / names.METRICS_FILE).read_text())
    assert metrics["ptr_switch_epoch"] == 1
    assert metrics["val/loss"] < 5 and metrics["test/acc"] > 0.34  # a model, not a collapse
    return metrics


def assert_same_run(actual: dict, expected: dict) -> None:
    for key in ("test/acc", "test/mean_class_acc", "val/acc", "val/loss", "epochs"):
        assert actual[key] == expected[key], key
    assert actual["ptr_switch_epoch"] == expected["ptr_switch_epoch"]


def test_killed_run_resumes_to_exactly_the_same_result(tmp_path, uninterrupted):
    victim = tmp_path / "victim"
    killed = start([*RUN, f"hydra.run.dir={victim}"], tmp_path)
    wait_for_checkpoints(victim / names.LAST_CHECKPOINT, 2, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    ckpt = torch.load(victim / names.LAST_CHECKPOINT, weights_only=True)
    assert ckpt["state_dict"]["regularizer._extra_state"]["active"], "kill after the PtR switch"
    assert ckpt["epoch"] < 4 and not (victim / names.METRICS_FILE).exists()

    code, output = completed([f"resume={victim}"], tmp_path)
    assert code == 0, output[-3000:]
    assert_same_run(json.loads((victim / names.METRICS_FILE).read_text()), uninterrupted)
    assert (victim / names.CSV_DIR / "metrics.before-resume-1.csv").is_file()  # nothing lost
    assert not (tmp_path / "outputs").exists()  # the resume worked in the run's own folder


def test_sigterm_mid_epoch_before_the_switch_resumes_to_the_same_switch_and_result(
    tmp_path, uninterrupted
):
    """The signal lands in the middle of epoch 1, the epoch whose mean CE switches PtR on."""
    run = tmp_path / "run"
    signal_mid_epoch_1 = [
        "+callbacks.stop._target_=tests.probes.SignalAt",
        "+callbacks.stop.step=4",  # 3 steps an epoch: after the 2nd step of epoch 1
    ]
    code, output = completed([*RUN, *signal_mid_epoch_1, f"hydra.run.dir={run}"], tmp_path)
    assert code == 128 + signal.SIGTERM, output[-3000:]  # never taken for a finished run
    error = (run / names.ERROR_FILE).read_text()
    assert "terminated by SIGTERM" in error and f"resume={run}" in error
    assert "end of epoch 0" in error and f"resume={run}" in output
    assert torch.load(run / names.LAST_CHECKPOINT, weights_only=True)["epoch"] == 0

    # The signal must not come again: ++ because Hydra first checks every override against
    # the default config, which has no callbacks.stop.
    code, output = completed([f"resume={run}", "++callbacks.stop.step=-1"], tmp_path)
    assert code == 0, output[-3000:]
    assert_same_run(json.loads((run / names.METRICS_FILE).read_text()), uninterrupted)
    assert not (run / names.ERROR_FILE).exists()  # the stale "terminated" note is gone


def test_a_job_requeued_as_slurm_does_continues_to_the_same_result(tmp_path, uninterrupted):
    """submitit's local executor, as on SLURM: the job gets USR2 mid-epoch, submitit requeues
    it into the same job folder, and resume=auto continues it from its last finished epoch."""
    sweep, signalled = tmp_path / "sweep", tmp_path / "signalled"
    usr2_mid_epoch_1 = [
        "+callbacks.usr2._target_=tests.probes.SignalAt",
        "+callbacks.usr2.step=4",
        "+callbacks.usr2.signum=SIGUSR2",
        f"+callbacks.usr2.once={signalled}",
    ]
    code, output = completed(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "+hydra.launcher.max_num_timeout=1",  # submitit counts a local USR2 as a time-out
            "resume=auto",  # as cluster=slurm sets it
            *RUN,
            *usr2_mid_epoch_1,
            "logger=wandb",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        offline_wandb_env(tmp_path),
    )
    assert code == 0, output[-3000:]
    job = sweep / "0"
    assert signalled.is_file(), "USR2 never came"
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs
    assert (job / names.CSV_DIR / "metrics.before-resume-1.csv").is_file()  # a second run
    assert_same_run(json.loads((job / names.METRICS_FILE).read_text()), uninterrupted)
    before, after = offline_runs(job)  # the job's two runs, on W&B one run continued
    assert before.id == after.id == (job / names.WANDB_RUN_ID_FILE).read_text().strip()


def test_sigint_leaves_the_resume_hint_and_a_second_run_in_the_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    first = start([*TINY, "trainer.max_epochs=200", f"hydra.run.dir={run}"], tmp_path)
    wait_for_checkpoints(run / names.LAST_CHECKPOINT, 1, first)
    live_config = (run / ".hydra" / "config.yaml").read_text()
    code, output = completed([*TINY, "seed=1", f"hydra.run.dir={run}"], tmp_path)
    assert code == 1 and "another run is using" in output and "Traceback" not in output
    # Refused before anything was written: the live run's records are its own.
    assert (run / ".hydra" / "config.yaml").read_text() == live_config
    assert not (run / names.ERROR_FILE).exists() and names.ERROR_FILE not in output
    first.send_signal(signal.SIGINT)
    output = finish(first)
    assert first.returncode == 128 + signal.SIGINT, output[-3000:]
    error = (run / names.ERROR_FILE).read_text()
    assert "terminated by SIGINT" in error and f"resume={run}" in error


def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_so(tmp_path):
    run = tmp_path / "run"
    disk_full_in_epoch_1 = [
        "+callbacks.disk._target_=tests.probes.DiskFullFrom",
        "+callbacks.disk.epoch=1",
    ]
    code, output = completed([*RUN, *disk_full_in_epoch_1, f"hydra.run.dir={run}"], tmp_path)
    assert code == 1, output[-3000:]
    assert "File too large" in (run / names.ERROR_FILE).read_text()
    good = torch.load(run / names.LAST_CHECKPOINT, weights_only=True)
    assert good["epoch"] == 0  # the one of epoch 0, whole
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt"]
    assert leftovers == []  # no half-written temporary file


def test_an_unreadable_checkpoint_is_named_with_what_to_do(make_cfg, tmp_path):
    cfg = make_cfg("trainer.max_epochs=1")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    last = run / names.LAST_CHECKPOINT
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"last.ckpt cannot be read .*truncated or damaged"):
        train(make_cfg(f"resume={run}"))
    text = tmp_path / "notes.txt"
    text.write_text("a text file\n")
    with pytest.raises(CheckpointError) as err:
        train(make_cfg(f"ckpt_path={text}", out="other"))
    assert "notes.txt is not a PyTorch checkpoint" in str(err.value)
    assert "start the run again" not in str(err.value)


def test_ckpt_path_that_is_no_checkpoint_or_does_not_fit(make_cfg, tmp_path):
    weights_only = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights_only)
    with pytest.raises(CheckpointError, match=r"weights.pt is not a checkpoint of a training run"):
        train(make_cfg(f"ckpt_path={weights_only}", out="a"))

    three = make_cfg("trainer.max_epochs=1", out="three")
    train(three)
    last = Path(three.paths.output_dir) / names.LAST_CHECKPOINT
    four = make_cfg(f"ckpt_path={last}", "dataset.classes=[0,1,2,3]", out="four")
    with pytest.raises(CheckpointError, match=r"head.0.weight: checkpoint \(3, 512\) vs this run"):
        train(four)


def test_resume_refuses_a_folder_without_a_checkpoint(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        train(make_cfg(f"resume={tmp_path}"))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(make_cfg):
    cfg = make_cfg("model.lr=1e3", "trainer.max_epochs=3")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step \d+ \(epoch 1.*train/ce.*is from before"
    ):
        train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0  # written at the end of epoch 0, before the bad step
    assert all(
        torch.isfinite(t).all()
        for t in ckpt["state_dict"].values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def test_non_finite_loss_in_the_first_epoch_promises_no_checkpoint(make_cfg):
    cfg = make_cfg("model.lr=1e8", "trainer.max_epochs=3")
    with pytest.raises(NonFiniteLossError, match=r"\(epoch 0.*no checkpoint was written yet"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / names.LAST_CHECKPOINT).exists()


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


def test_ctrl_c_during_a_checkpoint_write_finishes_it_then_interrupts(tmp_path):
    import threading

    import torch

    from ptr_lightning.run.checkpoints import AtomicCheckpointIO, read_checkpoint

    checkpoint = {
        "state_dict": {"w": torch.arange(4_000_000.0)},
        "epoch": 3,
        "global_step": 9,
        "loops": {},
        "optimizer_states": [],
    }
    path = tmp_path / "last.ckpt"
    timer = threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):  # not torch's "unexpected pos" RuntimeError
        for _ in range(200):
            AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    timer.join()
    saved = read_checkpoint(path)
    assert saved["epoch"] == 3 and torch.equal(
        saved["state_dict"]["w"], checkpoint["state_dict"]["w"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
