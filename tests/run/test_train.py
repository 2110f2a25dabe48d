"""train(cfg) on tiny digits, composed through Hydra as the CLI composes it."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.run.train import train


def read_metrics_csv(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_ptr_run_writes_metrics_config_checkpoint_and_telemetry(make_cfg):
    cfg = make_cfg("regularizer.T=100")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)

    saved = json.loads((run / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for key in ("test/acc", "test/mean_class_acc", "val/acc"):
        assert 0.0 <= saved[key] <= 1.0 and math.isfinite(saved[key])
    assert saved["ptr_active"] is True and saved["ptr_switch_epoch"] == 0

    assert "R: 3" in (run / "config.yaml").read_text()  # resolved, not ${model.ptr.R}
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["regularizer._extra_state"]["active"] is True

    rows = read_metrics_csv(run)
    active = [r for r in rows if r.get("ptr/active") == "1.0"]
    assert active, "the pseudo-task never switched on"
    for r in active:
        assert float(r["ptr/w"]) > 0 and float(r["ptr/g_ce"]) > 0 and float(r["ptr/g_ptr"]) > 0
        assert float(r["train/ptr_loss"]) >= 0
    # Off during the first epoch (the switch decides at its end), on after it.
    assert [r for r in rows if r.get("ptr/active") == "0.0"]
    assert {r["val/acc"] != "" for r in rows if r.get("val/loss")} == {True}
    assert any(r.get("lr/backbone") for r in rows) and any(r.get("lr/head") for r in rows)


def test_pseudo_task_stays_off_above_threshold(make_cfg):
    cfg = make_cfg("regularizer.T=0", "trainer.max_epochs=1")
    metrics = train(cfg)
    assert metrics["ptr_active"] is False and metrics["ptr_switch_epoch"] is None
    rows = read_metrics_csv(Path(cfg.paths.output_dir))
    assert not any(r.get("ptr/w") for r in rows)


@pytest.mark.parametrize("regularizer", ["none", "fnp"])
def test_other_regularizers_train(make_cfg, regularizer):
    metrics = train(make_cfg(f"regularizer={regularizer}", "trainer.max_epochs=2"))
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize(
    "variant",
    [
        (
            "regularizer.targets=uniform_instance",
            "regularizer.m_mode=features",
            "regularizer.switch=epoch",
        ),
        ("regularizer.targets=centred", "regularizer.balance=parameters", "regression=l2"),
        ("regularizer.targets=constant",),
    ],
)
def test_every_ptr_variant_trains(make_cfg, variant):
    cfg = make_cfg("regularizer.T=100", "trainer.max_epochs=2", *variant)
    metrics = train(cfg)
    assert metrics["ptr_switch_epoch"] == 0 and 0.0 <= metrics["test/acc"] <= 1.0
    on = [r for r in read_metrics_csv(Path(cfg.paths.output_dir)) if r.get("ptr/w")]
    assert on and all(math.isfinite(float(r["ptr/w"])) and float(r["ptr/w"]) > 0 for r in on)


def test_feature_norm_penalty_trains(make_cfg):
    cfg = make_cfg("method=feature_norm", "trainer.max_epochs=1")
    metrics = train(cfg)
    assert cfg.choices.regularizer == "feature_norm" and metrics["ptr_switch_epoch"] is None
    rows = read_metrics_csv(Path(cfg.paths.output_dir))
    assert all(float(r["feature_norm/norm_sq"]) > 0 for r in rows if r.get("train/reg_loss"))


@pytest.mark.slow  # the resume tests also require runs to repeat exactly
def test_deterministic_runs_are_identical(make_cfg):
    # model.lr=0.002: this tiny run learns rather than saturating, so seeds really differ
    common = ("regularizer.T=100", "trainer.deterministic=true", "model.lr=0.002")
    first = train(make_cfg(*common, "seed=3", out="a"))
    second = train(make_cfg(*common, "seed=3", out="b"))
    third = train(make_cfg(*common, "seed=4", out="c"))
    keys = ["test/acc", "test/mean_class_acc", "val/acc", "val/loss"]
    assert [first[k] for k in keys] == [second[k] for k in keys]
    assert first["val/loss"] != third["val/loss"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("regularizer.R=0", r"regularizer.R=0.*> 0"),
        ("regularizer.R=-2", r"regularizer.R=-2"),
        ("regularizer.R=inf", r"regularizer.R=inf.*finite"),
        ("regularizer.m=-1", r"regularizer.m=-1.*>= 0"),
        ("regularizer.T=-0.5", r"regularizer.T=-0.5.*>= 0"),
        ("regularizer.loss=huber", r"regularizer.loss='huber'.*regression=sml1"),
        ("model.arch=resnet7", r"model.arch='resnet7'"),
        ("model.lr=0", r"model.lr=0"),
        ("dataset.batch_size=0", r"dataset.batch_size=0"),
        ("dataset.val_fraction=1.5", r"dataset.val_fraction=1.5.*\(0, 1\)"),
        ("model.weight_decay=-1", r"model.weight_decay=-1.*>= 0"),
        ("optimizer.momentum=1", r"optimizer.momentum=1.*\[0, 1\)"),
        ("+optimizer.betas=[0.9,0.999]", r"optimizer: .*betas"),  # SGD has none
        ("optimizer=adamw optimizer.betas=[0.9,1.5]", r"optimizer.betas=\[0.9, 1.5\].*\[0, 1\)"),
        ("scheduler=cosine scheduler.warmup=-1", r"scheduler.warmup=-1.*>= 0"),
        ("model=vit_b_16 model.layer_decay=1.5", r"model.layer_decay=1.5.*\(0, 1\]"),
        ("model.layer_decay=0.5", r"model.layer_decay needs model.layers"),
        ("model.library=keras", r"model.library='keras'.*'timm'"),
        ("scheduler.patience=0", r"scheduler.patience=0"),
        ("trainer.max_epochs=0", r"trainer.max_epochs=0"),
        ("trainer.precision=16-mixed", r"not float16.*bf16-mixed"),
        ("dataset.image_size=0", r"dataset.image_size=0.*>= 1"),
        ("scheduler.factor=2", r"scheduler.factor=2.*\(0, 1\)"),
        ("dataset.classes=[1,1,2]", r"dataset.classes=\[1, 1, 2\].*each once"),
        ("dataset.classes=[3]", r"dataset.classes=\[3\].*at least 2"),
        ("dataset.val_fraction=0.001", r"dataset.val_fraction=0.001 leaves the val split empty"),
        ("dataset.val_fraction=0.999", r"dataset.val_fraction=0.999 leaves the test split empty"),
        ("regularizer.targets=gaussian", r"regularizer.targets='gaussian'.*'uniform'"),
        ("regularizer.m_mode=relative", r"regularizer.m_mode='relative'.*'features'"),
        ("regularizer.balance=weights", r"regularizer.balance='weights'.*'parameters'"),
        ("regularizer.switch=never", r"regularizer.switch='never'.*'lr_drop'"),
        ("telemetry.every_n_steps=-1", r"telemetry.every_n_steps=-1.*0 turns telemetry off"),
        ("optimizer=adamw optimizer.betas=0.9", r"optimizer.betas=0.9.*two numbers"),
        ("model.layer_decay=0.5 model.layers=['([']", r"model.layers: '\(\[' is not a regular"),
        ("model.layer_decay=0.5 model.layers=[nomatch]", r"model.layers=\['nomatch'\] match no"),
        ("regularizer=delta regularizer.attention_images=0", r"attention_images=0.*>= 1"),
        ("regularizer=delta regularizer.alpha=-1", r"regularizer.alpha=-1"),
        ("regularizer=co_tuning regularizer.weight=-1", r"regularizer.weight=-1"),
        ("regularizer=joint_train regularizer.batch_size=0", r"regularizer.batch_size=0.*>= 1"),
    ],
)
def test_bad_configuration_fails_before_training(make_cfg, override, message):
    cfg = make_cfg(*override.split())
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_a_sweep_trial_whose_pseudo_task_never_switched_on_is_not_ranked(make_cfg):
    from ptr_lightning.run.job import objective

    cfg = make_cfg("optimized_metric=val/acc")
    never = {"val/acc": 0.9, "pseudo_task": True, "ptr_switch_epoch": None}
    assert objective(cfg, never) is None  # the Optuna sweeper records it as a failed trial
    assert objective(cfg, {**never, "ptr_switch_epoch": 3}) == 0.9
    assert objective(cfg, {"val/acc": 0.7, "pseudo_task": False, "ptr_switch_epoch": None}) == 0.7
    assert objective(cfg, {"val/acc": float("nan"), "pseudo_task": False}) is None


def test_the_end_of_run_line_names_the_switch_rule_in_use_and_its_cause_only():
    from ptr_lightning.run.run_files import summary

    metrics = {
        "test/acc": 0.5,
        "test/acc_1crop": 0.5,
        "test/mean_class_acc": 0.5,
        "epochs": 3,
        "seconds": 9.0,
        "ptr_switch_epoch": None,
    }
    line = summary(metrics, {}, Path("run"), "lr_drop").splitlines()[1]
    assert line == "the pseudo-task never switched on (lr_drop: the learning rate never dropped)"
    assert "regularizer.T" in summary(metrics, {}, Path("run"), "latch")
    assert "never switched on" not in summary(metrics, {}, Path("run"), None)  # no pseudo-task
