"""Source -> target on digits (0-4 the source task, 5-9 the target) with JointTrain, DELTA and
Co-Tuning: one CLI multirun of the three from the source run's checkpoint and its images, the
report that lists them, their state through a resume, and what is refused before any image is
decoded."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict
from PIL import Image

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.data.digits import DigitsDataModule
from ptr_lightning.results.report import main as report
from ptr_lightning.run.build import assemble, build_components
from ptr_lightning.run.train import train
from tests.conftest import compose_config
from tests.fixtures.cli import job_folders, run_cli

SMALL = [
    "dataset.image_size=16",
    "dataset.val_fraction=0.1",
    "dataset.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]
SOURCE = [*SMALL, "dataset.classes=[0,1,2,3,4]", "dataset.train_per_class=8"]
# One training image per class: DELTA measures its channel attention on these 5 (seconds).
TARGET = [*SMALL, "dataset.classes=[5,6,7,8,9]", "dataset.train_per_class=1", "model.lr=0.01"]
METHODS = ("joint_train", "delta", "co_tuning")


@dataclass(frozen=True)
class Chain:
    weights: Path  # the source run's checkpoint
    images: Path  # the source run's training images as an image folder
    jobs: dict[str, Path]  # method -> its run folder in the multirun
    sweep: Path


def export_image_folder(datamodule: DigitsDataModule, root: Path) -> None:
    """The training images of ``datamodule`` as ``root/train/<class>/<n>.png``."""
    for n, (image, label) in enumerate(datamodule.train_dataset):
        folder = root / "train" / datamodule.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{n}.png")


def in_process(overrides: list[str], out: Path) -> dict:
    cfg = compose_config(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    try:
        return train(cfg)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    in_process([*SOURCE, "regularizer=none"], root / "source")
    source = DigitsDataModule(image_size=16, train_per_class=8, classes=[0, 1, 2, 3, 4])
    source.setup()
    export_image_folder(source, root / "source_images")
    sweep = root / "sweep"
    run_cli(
        "-m",
        f"method={','.join(METHODS)}",
        *TARGET,
        f"model.weights={root / 'source' / names.LAST_CHECKPOINT}",
        f"paths.source_root={root / 'source_images'}",
        f"hydra.sweep.dir={sweep}",
        cwd=root,
        timeout=600,
    )
    jobs = {
        OmegaConf.load(job / names.CONFIG_FILE).choices.regularizer: job
        for job in job_folders(sweep)
    }
    return Chain(root / "source" / names.LAST_CHECKPOINT, root / "source_images", jobs, sweep)


def test_each_method_runs_from_the_cli_and_the_report_lists_it(chain, capsys):
    assert set(chain.jobs) == set(METHODS)
    for method, job in chain.jobs.items():
        assert (job / names.METRICS_FILE).is_file(), method
        config = OmegaConf.load(job / names.CONFIG_FILE)
        assert config.run.job_type == method  # the W&B job type
    rows = read_metrics(chain.jobs["joint_train"])
    assert {"joint_train/source_ce", "train/reg_loss"} <= rows
    assert "delta/feature_map_dist" in read_metrics(chain.jobs["delta"])
    assert "co_tuning/kl" in read_metrics(chain.jobs["co_tuning"])
    report([str(chain.sweep)])
    table = capsys.readouterr().out
    for method in METHODS:
        assert f"| {method} " in table, table


def read_metrics(run: Path) -> set[str]:
    header = (run / names.CSV_METRICS).read_text().splitlines()[0]
    return set(header.split(","))


def resumed(
    chain: Chain, method: str, tmp_path: Path, mark: Callable[[dict], None] | None = None
) -> tuple[dict, dict]:
    """The state of ``method``'s run after its first epoch (changed by ``mark``, so that a
    value learned again at the resume would show), and after a resume to the second."""
    run = tmp_path / method
    shutil.copytree(chain.jobs[method], run)
    checkpoint = torch.load(run / names.LAST_CHECKPOINT, weights_only=True)
    if mark is not None:
        mark(checkpoint["state_dict"])
        torch.save(checkpoint, run / names.LAST_CHECKPOINT)
    overrides = [f"resume={run}", "trainer.max_epochs=2"]  # as the command line gives them
    train(compose_config(overrides), overrides)
    GlobalHydra.instance().clear()
    second = torch.load(run / names.LAST_CHECKPOINT, weights_only=True)
    assert second["epoch"] == 1  # it trained the second epoch
    return checkpoint["state_dict"], second["state_dict"]


def test_co_tuning_relationship_comes_back_from_the_checkpoint_and_is_not_learned_again(
    chain, tmp_path
):
    # No average of the source model's predictions: learned again, the relationship would differ.
    marked = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]).expand(5, 5).clone()

    def mark(state: dict) -> None:
        assert state["regularizer.relationship"].shape == (5, 5)  # target x source classes
        state["regularizer.relationship"] = marked

    _, second = resumed(chain, "co_tuning", tmp_path, mark)
    assert torch.equal(second["regularizer.relationship"], marked)


def test_delta_source_model_and_attention_come_back_from_the_checkpoint(chain, tmp_path):
    marked = torch.linspace(0, 1, 512).softmax(dim=0)

    def mark(state: dict) -> None:
        assert state["regularizer.attention_layer4"].shape == marked.shape
        state["regularizer.attention_layer4"] = marked

    first, second = resumed(chain, "delta", tmp_path, mark)
    kept = [key for key in first if key.startswith("regularizer.")]
    assert {f"regularizer.attention_layer{i}" for i in range(1, 5)} <= set(kept)
    assert any(key.startswith("regularizer.source.") for key in kept)
    for key in kept:  # the frozen source model and every layer's attention
        assert torch.equal(second[key], first[key]), key
    assert torch.equal(second["regularizer.attention_layer4"], marked)


def test_joint_train_resumed_run_equals_the_uninterrupted_one(chain, tmp_path):
    _, second = resumed(chain, "joint_train", tmp_path)
    in_process(
        [
            *TARGET,
            "method=joint_train",
            "trainer.max_epochs=2",
            f"model.weights={chain.weights}",
            f"paths.source_root={chain.images}",
        ],
        tmp_path / "whole",
    )
    whole = torch.load(tmp_path / "whole" / names.LAST_CHECKPOINT, weights_only=True)
    assert set(whole["state_dict"]) == set(second)
    for key, value in whole["state_dict"].items():
        assert torch.equal(second[key], value), key


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ([], r"regularizer.source_root=None"),
        (["model.weights=null"], r"holds 5 classes \(0, 1, 2, 3, 4\) .* has 1000 outputs"),
    ],
)
def test_joint_train_without_its_source_fails_before_any_image_is_decoded(
    chain, make_cfg, overrides, error
):
    source_root = [f"paths.source_root={chain.images}"] if overrides else []
    cfg = make_cfg("method=joint_train", *source_root, *overrides)
    with pytest.raises(ConfigError, match=error):
        components = build_components(cfg)
        assemble(cfg, components, time.monotonic())
    if overrides:
        assert components.datamodule.split_ids == {}  # the target was not decoded either
