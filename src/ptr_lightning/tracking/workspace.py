"""A saved W&B workspace for PtR sweeps, created by one command (online only).

    ptr-workspace [--entity ENTITY] [--project ptr-lightning] [--name NAME]

Panels: val/acc and train/ce per step, runs grouped by W&B group (one group per multirun;
mean and std band); ptr/w and the two gradient norms at the feature layer; the R x m table
(a parallel-coordinates plot of R, m, test/acc and the runs table's R, m, test/acc columns).
Offline (no API key, or the server cannot be reached) nothing is created: one line says why.
Needs ``pip install wandb-workspaces`` (``pip install -e ".[dashboards]"``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from ptr_lightning.core import names
from ptr_lightning.core.config_keys import PTR_M, PTR_R
from ptr_lightning.tracking.wandb_logger import wandb_configured, wandb_host, wandb_reachable


def build_workspace(entity: str, project: str, name: str) -> Any:
    """The workspace definition (nothing is sent until ``.save()``)."""
    import wandb_workspaces.workspaces as ws

    runs = ws.RunsetSettings(
        pinned_columns=[f"config:{PTR_R}", f"config:{PTR_M}", f"summary:{names.TEST_ACC}"]
    )
    return ws.Workspace(
        entity=entity, project=project, name=name, sections=sections(), runset_settings=runs
    )


def sections() -> list[Any]:
    """Training curves by group, PtR's balancing, and test/acc over R and m."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def by_group(metric: str) -> Any:
        return wr.LinePlot(
            title=f"{metric} by group",
            y=[metric],
            groupby="Group",
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
        )

    gradient_norms = wr.LinePlot(
        title="mean gradient norms at the feature layer",
        y=[names.PTR_G_CE, names.PTR_G_PTR],
        log_y=True,
    )
    r_m = wr.ParallelCoordinatesPlot(
        title="test/acc over R and m",
        columns=[
            wr.ParallelCoordinatesPlotColumn(metric=wr.Config(PTR_R)),
            wr.ParallelCoordinatesPlotColumn(metric=wr.Config(PTR_M)),
            wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(names.TEST_ACC)),
        ],
    )
    training = (names.VAL_ACC, names.TRAIN_CE)
    return [
        ws.Section(name="Training", is_open=True, panels=[by_group(k) for k in training]),
        ws.Section(
            name="PtR telemetry",
            is_open=True,
            panels=[wr.LinePlot(title="balancing weight w", y=[names.PTR_W]), gradient_norms],
        ),
        ws.Section(name="R x m", is_open=True, panels=[r_m]),
    ]


def offline_reason() -> str | None:
    """Why the workspace cannot be created from here, or None."""
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if not wandb_configured():
        return "no W&B login on this machine (WANDB_API_KEY or `wandb login`)"
    return wandb_reachable(wandb_host())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptr-workspace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", help="W&B user or team (default: your default entity)")
    parser.add_argument("--project", default="ptr-lightning")
    parser.add_argument("--name", default="PtR: R x m sweep")
    args = parser.parse_args(argv)
    reason = offline_reason()
    if reason:
        print(f"workspace: skipped, W&B is not reachable online from here: {reason}")
        return 0
    import wandb

    entity = args.entity or os.environ.get("WANDB_ENTITY") or wandb.Api().default_entity
    workspace = build_workspace(entity, args.project, args.name)
    workspace.save()
    print(f"workspace: saved {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
