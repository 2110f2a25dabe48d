"""The W&B sweep configuration and the saved workspace definition (both need no network)."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from ptr_lightning.tracking import workspace
from tests.conftest import compose_config

SWEEP = Path(__file__).parents[2] / "sweeps" / "wandb_R_m_seed.yaml"


def test_wandb_sweep_runs_the_cli_with_overrides_hydra_composes():
    sweep = yaml.safe_load(SWEEP.read_text())
    assert sweep["method"] == "grid" and sweep["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert sweep["command"] == [
        "${env}",
        "${interpreter}",
        "-m",
        "ptr_lightning",
        "logger=wandb",
        "${args_no_hyphens}",
    ]
    grid = {key: spec["values"] for key, spec in sweep["parameters"].items()}
    assert set(grid) == {"regularizer.R", "regularizer.m", "seed"}
    # What the agent runs for each point of the grid (${args_no_hyphens}: key=value ...).
    for values in itertools.islice(itertools.product(*grid.values()), 0, None, 7):
        args = [f"{key}={value}" for key, value in zip(grid, values, strict=True)]
        cfg = compose_config(["logger=wandb", *args])
        assert (cfg.regularizer.R, cfg.regularizer.m, cfg.seed) == values
        assert "wandb" in cfg.logger


def test_workspace_has_the_sweep_panels():
    space = workspace.build_workspace("someone", "ptr-lightning", "PtR: R x m sweep")
    panels = {s.name: s.panels for s in space.sections}
    assert [p.y for p in panels["Training"]] == [["val/acc"], ["train/ce"]]
    assert all(p.groupby == "Group" for p in panels["Training"])
    assert [p.y for p in panels["PtR telemetry"]] == [["ptr/w"], ["ptr/g_ce", "ptr/g_ptr"]]
    assert "config:regularizer.R" in space.runset_settings.pinned_columns
    space._to_model()  # W&B's own view spec: the definition is one W&B accepts


def test_workspace_is_skipped_with_one_line_when_offline(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert workspace.main([]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line == "workspace: skipped, W&B is not reachable online from here: WANDB_MODE=offline"
