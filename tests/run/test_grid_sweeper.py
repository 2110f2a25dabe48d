"""hydra/sweeper=grids: the union of one product per grid, and experiment=ptr_diagnosis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

from ptr_lightning.core.config_dir import CONFIG_DIR


def GridSweeper(**settings: Any):  # noqa: N802  (stands for the class)
    """The sweeper as Hydra makes it: Hydra's one plugin scan per process re-executes the
    sweeper modules (rebinding BasicSweeper), so the class is looked up after that scan."""
    Plugins.instance()
    from hydra_plugins.ptr_lightning_sweeps.grid_sweeper import GridSweeper

    return GridSweeper(**settings)


def jobs(sweeper, *overrides: str) -> list[list[str]]:
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    (batch,) = sweeper.split_arguments(parsed, None)
    return batch


def test_each_grid_is_its_own_product_and_shared_overrides_apply_to_all():
    sweeper = GridSweeper(grids={"a": {"method": "ft"}, "b": {"method": "ptr", "x": "1,2,3"}})
    assert jobs(sweeper, "seed=0,1", "dataset=digits") == [
        ["method=ft", "seed=0", "dataset=digits"],
        ["method=ft", "seed=1", "dataset=digits"],
        *[
            ["method=ptr", f"x={x}", f"seed={s}", "dataset=digits"]
            for x in (1, 2, 3)
            for s in (0, 1)
        ],
    ]


def test_an_override_of_a_gridded_key_restricts_only_the_grids_that_have_it():
    sweeper = GridSweeper(
        grids={"ft": {"method": "ft"}, "ptr": {"method": "ptr", "x": "1,2,3", "y": "a,b"}}
    )
    assert jobs(sweeper, "x=2", "y=b,c") == [
        ["method=ft"],
        ["method=ptr", "x=2", "y=b"],
        ["method=ptr", "x=2", "y=c"],
    ]


def test_an_override_of_a_key_a_grid_holds_keeps_or_leaves_out_that_grid():
    sweeper = GridSweeper(
        grids={
            "ft": {"method": "ft"},
            "a": {"method": "ptr", "mode": "absolute", "R": "3,10"},
            "f": {"method": "ptr", "mode": "features", "m": "1,2", "R": "3,10"},
        }
    )
    assert jobs(sweeper, "mode=absolute", "R=3") == [
        ["method=ft"],
        ["method=ptr", "mode=absolute", "R=3"],
    ]
    # naming a held value keeps that grid as it is: no absolute job with features' m
    assert jobs(sweeper, "mode=absolute,features", "m=5") == [
        ["method=ft"],
        ["method=ptr", "mode=absolute", "R=3"],
        ["method=ptr", "mode=absolute", "R=10"],
        ["method=ptr", "mode=features", "m=5", "R=3"],
        ["method=ptr", "mode=features", "m=5", "R=10"],
    ]
    with pytest.raises(ValueError, match="no grid of the sweep has the values given for method"):
        jobs(sweeper, "method=lwf")


def test_without_grids_it_is_the_basic_sweeper():
    assert jobs(GridSweeper(), "a=1,2", "b=3") == [["a=1", "b=3"], ["a=2", "b=3"]]


def test_ptr_diagnosis_runs_fine_tuning_once_per_seed():
    sweeper_cfg = OmegaConf.load(CONFIG_DIR / "experiment" / "ptr_diagnosis.yaml").hydra.sweeper
    sweeper = GridSweeper(
        params=dict(sweeper_cfg.params), grids=OmegaConf.to_container(sweeper_cfg.grids)
    )
    params = [f"{key}={value}" for key, value in sweeper.params.items()]
    all_jobs = jobs(sweeper, *params)
    methods = Counter(job[0] for job in all_jobs)
    # PtR: 4 targets x 3 switches x 3 R, with the backbone's m or 3 multipliers of the features'
    assert methods == {"method=ft": 3, "method=ptr_sml1": 3 * 4 * 3 * 3 * (1 + 3), "method=fnp": 27}
    assert len({tuple(job) for job in all_jobs}) == len(all_jobs)  # no job twice
    restricted = jobs(sweeper, *params, "regularizer.R=3", "regularizer.m_mode=absolute")
    assert Counter(job[0] for job in restricted) == {
        "method=ft": 3,
        "method=ptr_sml1": 3 * 4 * 3,
        "method=fnp": 9,
    }
    assert all(len(job) == 2 for job in restricted if job[0] == "method=ft")  # ft and a seed


def test_every_ptr_diagnosis_job_composes_and_builds_what_it_names():
    from ptr_lightning.run.build import build_components
    from tests.conftest import compose_config

    sweeper_cfg = OmegaConf.load(CONFIG_DIR / "experiment" / "ptr_diagnosis.yaml").hydra.sweeper
    sweeper = GridSweeper(grids=OmegaConf.to_container(sweeper_cfg.grids))
    for job in jobs(sweeper, "seed=0", "regularizer.R=3", "regularizer.switch=epoch"):
        cfg = compose_config(["experiment=ptr_diagnosis", *job, "paths.output_dir=/tmp/unused"])
        regularizer = build_components(cfg).regularizer
        for override in job[1:]:
            key, value = override.split("=")
            if key.startswith("regularizer."):
                attribute = {"switch": "switch_rule"}.get(key[12:], key[12:])
                assert str(getattr(regularizer, attribute)) in (value, f"{value}.0"), override
