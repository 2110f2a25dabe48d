"""``resume=<run folder>``: the command line's overrides, parsed and applied as Hydra does."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.run.build import build_components
from ptr_lightning.run.resume import resume_config
from tests.conftest import compose_config


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder as train() leaves it: the resolved config.yaml and a last checkpoint."""
    folder = tmp_path / "run"
    cfg = compose_config(["scheduler=step", "trainer.deterministic=true"])
    (folder / names.LAST_CHECKPOINT).parent.mkdir(parents=True)
    (folder / names.LAST_CHECKPOINT).write_bytes(b"checkpoint")
    (folder / names.CONFIG_FILE).write_text(
        OmegaConf.to_yaml(
            OmegaConf.merge(cfg, {"paths": {"output_dir": str(folder)}}), resolve=True
        )
    )
    return folder


def resume(run: Path, *overrides: str):
    cfg = compose_config([f"resume={run}", *overrides])
    return resume_config(cfg, [f"resume={run}", *overrides])


def test_resume_points_at_the_run_folder_and_its_checkpoint(run):
    cfg = resume(run)
    assert cfg.paths.output_dir == str(run.resolve()) and cfg.resume is None
    assert cfg.ckpt_path == str((run / names.LAST_CHECKPOINT).resolve())
    assert cfg.trainer.deterministic is True and cfg.scheduler.milestones == [0.5, 0.75]


def test_key_value_changes_an_existing_key(run):
    assert resume(run, "trainer.max_epochs=60").trainer.max_epochs == 60


def test_tilde_deletes_the_key(run):
    cfg = resume(run, "~trainer.deterministic")
    assert "deterministic" not in cfg.trainer
    assert "~trainer" not in cfg  # the bug: a node named '~trainer' was added


def test_plus_adds_a_key_and_refuses_an_existing_one(run):
    assert resume(run, "+trainer.limit_val_batches=2").trainer.limit_val_batches == 2
    with pytest.raises(ConfigError, match=r"'trainer.max_epochs' already exists"):
        resume_config(compose_config([f"resume={run}"]), ["+trainer.max_epochs=5"])


def test_double_plus_adds_or_replaces(run):
    cfg = resume(run, "++trainer.max_epochs=7", "++trainer.limit_val_batches=3")
    assert cfg.trainer.max_epochs == 7 and cfg.trainer.limit_val_batches == 3


def test_quoted_lists_are_lists(run):
    # As the shell hands it over: 'scheduler.milestones=[0.3, 0.6]' is one argument.
    cfg = resume_config(compose_config([f"resume={run}"]), ["scheduler.milestones=[0.3, 0.6]"])
    assert list(cfg.scheduler.milestones) == [0.3, 0.6]


def test_a_key_the_run_does_not_have_names_the_plus_form(run):
    with pytest.raises(ConfigError, match=r"not a key of the run's config; \+trainer.bogus=1"):
        resume_config(compose_config([f"resume={run}"]), ["trainer.bogus=1"])


@pytest.mark.parametrize("group", ["dataset=flower102", "model=vgg16", "regularizer=fnp"])
def test_a_group_change_is_refused(run, group):
    with pytest.raises(ConfigError, match=r"keeps the config it was started with.*" + group):
        resume(run, group)


def test_a_sweep_is_refused(run):
    with pytest.raises(ConfigError, match="is a sweep"):
        resume_config(compose_config([f"resume={run}"]), ["trainer.max_epochs=3,4"])


def test_a_folder_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resume(tmp_path)


@pytest.mark.parametrize(
    "override",
    [
        "dataset.classes=[0,1]",
        "dataset.split_seed=3",
        "dataset.train_per_class=5",
        "model.arch=resnet50",
        "++model.weights=/some/other.pth",
    ],
)
def test_an_override_that_changes_what_is_trained_on_is_refused_naming_the_key(run, override):
    with pytest.raises(ConfigError, match=r"would change what the run trains on") as refused:
        resume_config(compose_config([f"resume={run}"]), [override])
    assert override in str(refused.value)


@pytest.mark.parametrize(
    "override", ["dataset.num_workers=2", "dataset.eval_batch_size=64", "trainer.max_epochs=9"]
)
def test_plumbing_overrides_are_allowed(run, override):
    resume_config(compose_config([f"resume={run}"]), [override])


def test_every_path_of_a_moved_run_points_into_its_new_folder(run, tmp_path):
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    cfg = resume(moved)
    assert cfg.paths.output_dir == str(moved.resolve())
    assert cfg.logger.csv.save_dir == str(moved.resolve())  # was the old folder, resolved
    assert str(run) not in OmegaConf.to_yaml(cfg)


def test_a_run_saved_before_optimizers_and_model_inputs_resumes_as_it_ran(run):
    current = resume(run)
    saved = OmegaConf.load(run / names.CONFIG_FILE)
    # As this version's predecessor wrote it: SGD's momentum only, no model library or input.
    saved.optimizer = {"momentum": 0.9}
    for key in ("library", "input"):
        del saved.model[key]
    (run / names.CONFIG_FILE).write_text(OmegaConf.to_yaml(saved))
    old = resume(run)
    assert old.optimizer._target_ == "torch.optim.SGD" and old.optimizer.momentum == 0.9
    assert old.model.library == "torchvision"
    assert old.model.input == current.model.input  # digits: the images whole, ImageNet's stats
    build_components(old)  # builds the optimizer and the data with the upgraded keys
