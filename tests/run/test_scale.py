"""Running at scale, on CPU: resume=auto, the GPU and DDP presets, compile, the local GPU pool,
the deferred non-finite check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.core.errors import ConfigError, NonFiniteLossError
from ptr_lightning.model.nonfinite import NonFiniteGuard
from ptr_lightning.run.build import build_components, build_module
from ptr_lightning.run.train import train
from tests.conftest import compose_config


def test_resume_auto_starts_fresh_then_continues_its_own_folder(make_cfg):
    first = train(make_cfg("resume=auto", "trainer.max_epochs=1", out="job"))
    assert first["epochs"] == 1
    run = Path(make_cfg(out="job").paths.output_dir)
    assert not (run / names.CSV_DIR / "metrics.before-resume-1.csv").exists()  # fresh

    again = train(make_cfg("resume=auto", "trainer.max_epochs=2", out="job"))
    assert again["epochs"] == 2  # one more epoch from the checkpoint, not two from scratch
    assert (run / names.CSV_DIR / "metrics.before-resume-1.csv").is_file()

    with pytest.raises(ConfigError, match=r"resume=auto: .* differs in dataset.classes"):
        train(make_cfg("resume=auto", "dataset.classes=[3,4,5]", out="job"))


def compose_with_hydra(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_gpu_and_ddp_presets_compose():
    gpu = compose_config(["trainer=gpu", "paths.output_dir=/tmp/unused"])
    assert gpu.trainer.precision == "bf16-mixed" and gpu.trainer.accelerator == "gpu"
    assert gpu.model.channels_last is True and gpu.trainer.deterministic is False
    ddp = compose_config(["trainer=ddp", "model=resnet50", "paths.output_dir=/tmp/unused"])
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.devices == -1
    assert ddp.trainer.precision == "bf16-mixed" and ddp.model.channels_last is True
    build_components(ddp)


def test_cluster_presets_compose_their_launchers():
    slurm = compose_with_hydra("cluster=slurm")
    assert "SlurmLauncher" in slurm.hydra.launcher._target_ and slurm.resume == "auto"
    assert slurm.hydra.launcher.max_num_timeout >= 1 and slurm.hydra.launcher.signal_delay_s > 0
    local = compose_with_hydra("cluster=local_gpus")
    assert "JoblibLauncher" in local.hydra.launcher._target_
    raw = OmegaConf.to_container(local, resolve=False)
    assert raw["gpu_pool"] == "${hydra:sweep.dir}/.gpus" and raw["trainer"]["devices"] == 1
    GlobalHydra.instance().clear()


def test_model_compile_compiles_backbone_and_head_keeping_their_names(make_cfg, caplog):
    from hydra.utils import instantiate

    cfg = make_cfg("model.compile=default")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    with caplog.at_level("INFO", logger="ptr_lightning"):
        module = build_module(cfg, datamodule)
    assert caplog.text.count("model.compile=default: compiling the backbone and the head") == 1
    assert module.backbone._compiled_call_impl is not None
    assert module.head._compiled_call_impl is not None
    assert all(
        not key.startswith(("backbone._orig_mod", "head._orig_mod")) for key in module.state_dict()
    )
    with pytest.raises(ConfigError, match=r"model.compile='fast'"):
        build_components(make_cfg("model.compile=fast"))


@pytest.mark.slow  # torch.compile of a ResNet-18 takes minutes on 2 CPU cores
def test_model_compile_default_runs_a_digits_job_on_cpu(make_cfg):
    metrics = train(make_cfg("model.compile=default", "trainer.max_epochs=2"))
    assert 0.0 <= metrics["test/acc"] <= 1.0


CLAIM = """
import sys, time
from pathlib import Path
from ptr_lightning.run.gpu_pool import claim_gpu

with claim_gpu(Path(sys.argv[1]), count=2, poll_s=0.05) as index:
    print(index, flush=True)
    while not Path(sys.argv[2]).exists():  # the job runs until the test ends it
        time.sleep(0.05)
"""


def test_jobs_of_a_local_sweep_each_get_a_gpu_of_their_own(tmp_path):
    pool = tmp_path / ".gpus"

    def job(name: str) -> tuple[subprocess.Popen, Path]:
        done = tmp_path / f"{name}.done"
        command = [sys.executable, "-c", CLAIM, str(pool), str(done)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True), done

    (first, first_done), (second, second_done) = job("first"), job("second")
    assert {first.stdout.readline().strip(), second.stdout.readline().strip()} == {"0", "1"}
    third, third_done = job("third")  # both GPUs taken: it waits
    first_done.touch()
    assert first.wait(timeout=60) == 0
    assert third.stdout.readline().strip() in {"0", "1"}  # the GPU the first one freed
    second_done.touch()
    third_done.touch()
    assert second.wait(timeout=60) == 0 and third.wait(timeout=60) == 0


def test_the_deferred_non_finite_check_stops_before_the_checkpoint(make_cfg, monkeypatch):
    """On a GPU the loss is not read every step; the run must still stop before a bad update
    reaches a checkpoint. Forced on CPU here."""
    monkeypatch.setattr(NonFiniteGuard, "deferred", lambda self, device: True)
    cfg = make_cfg("model.lr=1e3", "trainer.max_epochs=3")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step \d+ \(train/ce\).*epoch 1"
    ):
        train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / names.LAST_CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(
        torch.isfinite(t).all()
        for t in ckpt["state_dict"].values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )
    assert not (Path(cfg.paths.output_dir) / names.METRICS_FILE).exists()
