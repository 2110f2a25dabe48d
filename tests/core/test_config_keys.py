"""One list of what each config key is to a run, read by resume, the run's name and the results
tools alike."""

from __future__ import annotations

from omegaconf import OmegaConf

from ptr_lightning.core.config_keys import (
    changes_what_is_trained,
    flatten,
    is_compared,
    is_method,
    is_plumbing,
)
from ptr_lightning.results.runs import group_runs, load_runs
from ptr_lightning.tracking.run_identity import run_name
from tests.fixtures.run_folders import acc, make_run


def test_each_key_has_one_role():
    assert is_plumbing("dataset.num_workers") and is_plumbing("trainer.devices")
    assert is_plumbing("telemetry.every_n_steps") and not is_plumbing("trainer.max_epochs")
    assert changes_what_is_trained("dataset.classes") and changes_what_is_trained("model.arch")
    assert not changes_what_is_trained("dataset.root")  # moved data is the same data
    assert not changes_what_is_trained("model.lr")  # a resume may change the learning rate
    assert not is_compared("seed") and not is_compared("regularizer.seed")
    assert is_compared("model.lr") and is_compared("dataset.split_seed")
    assert is_method("regularizer.R") and not is_method("model.weight_decay")


def test_flatten_compares_3_and_3_0_alike():
    flat = flatten(OmegaConf.create({"a": {"b": 3, "c": [1, 2]}, "d": {}}))
    assert flat == {"a.b": 3.0, "a.c": "[1, 2]", "d": "{}"}


def test_plumbing_neither_names_a_run_nor_splits_a_group(tmp_path):
    cfg = OmegaConf.create(
        {"run": {"overrides": ["dataset.num_workers=4", "model.lr=0.1"], "job_num": None}}
    )
    assert run_name(cfg) == "lr=0.1"
    make_run(tmp_path / "a", acc(0.8), seed=0)
    make_run(tmp_path / "b", acc(0.9), seed=1)
    b = OmegaConf.load(tmp_path / "b" / "config.yaml")
    b.dataset.num_workers, b.trainer.devices = 4, [1]  # plumbing only
    OmegaConf.save(b, tmp_path / "b" / "config.yaml")
    (group,) = group_runs(load_runs([tmp_path]))
    assert [run.seed for run in group.runs] == [0, 1]
