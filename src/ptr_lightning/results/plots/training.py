"""Figures of training: learning curves, PtR telemetry, the R x m heat map."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from ptr_lightning.core import names
from ptr_lightning.core.config_keys import PTR_M, PTR_R
from ptr_lightning.results.plots.figure import Band, Missing, Plot, band_over_runs, legend_names
from ptr_lightning.results.runs import Group, Run, mean_std, sort_value

CURVES = (
    (names.TRAIN_CE_EPOCH, "train/ce (epoch mean)"),
    (names.VAL_ACC, "val/acc"),
    (f"{names.LR}/backbone", "learning rate (backbone)"),
)
TELEMETRY = (names.PTR_W, names.PTR_G_CE, names.PTR_G_PTR)


# --- 1. learning curves -------------------------------------------------------------------------


def learning_curves(groups: Sequence[Group]) -> Plot:
    drawn = [g for g in groups if any(r.series for r in g.runs)]
    if not drawn:
        raise Missing(f"no run has {names.CSV_METRICS}")
    legend = legend_names(drawn)
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    plot = Plot(fig, ["method", "metric", "epoch", *Band.COLUMNS])
    for ax, (key, title) in zip(fig.subplots(1, len(CURVES)), CURVES, strict=True):
        for group in drawn:
            series = [r.series[key] for r in group.runs if key in r.series]
            if not series:
                continue
            band = band_over_runs(series, by="epoch")
            band.draw(ax, f"{legend[id(group)]} (n={len(series)})")
            plot.rows += [[legend[id(group)], key, *row] for row in band.rows()]
        ax.set(title=title, xlabel="epoch")
        if key.startswith(names.LR):
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize="small")
    fig.suptitle("learning curves: mean over seeds, band: min to max")
    return plot


# --- 2. PtR telemetry ---------------------------------------------------------------------------


def switch_step(run: Run) -> float | None:
    """The first step logged with the pseudo-task on: ``ptr/active`` (thinned out by
    ``trainer.log_every_n_steps``) or a telemetry key only an active pseudo-task has (logged at
    its own step), whichever comes first."""
    steps = [
        float(
            series.step[np.argmax(series.value > 0)] if key == names.PTR_ACTIVE else series.step[0]
        )
        for key in (names.PTR_ACTIVE, names.GRAD_COHERENCE_PTR)
        if (series := run.series.get(key)) is not None and (series.value > 0).any()
    ]
    return min(steps, default=None)


def ptr_telemetry(groups: Sequence[Group]) -> Plot:
    drawn = [g for g in groups if any(names.PTR_W in r.series for r in g.runs)]
    if not drawn:
        raise Missing(
            f"no run's {names.CSV_METRICS} has {names.PTR_W} (no PtR/FNP run, or it never "
            "switched on)"
        )
    legend = legend_names(drawn)
    logged = {k for g in drawn for r in g.runs for k in r.series if k.startswith("ptr/")}
    keys = [*TELEMETRY, *sorted(logged - {*TELEMETRY, names.PTR_ACTIVE})]
    fig = Figure(figsize=(4.2 * len(keys), 3.6), layout="constrained")
    plot = Plot(fig, ["method", "metric", "step", *Band.COLUMNS])
    for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys, strict=True):
        for group in drawn:
            series = [r.series[key] for r in group.runs if key in r.series]
            if not series:
                continue
            band = band_over_runs(series, by="step")
            color = band.draw(ax, legend[id(group)], linewidth=1)
            plot.rows += [[legend[id(group)], key, *row] for row in band.rows()]
            for step in sorted({s for s in map(switch_step, group.runs) if s is not None}):
                ax.axvline(step, color=color, linestyle="--", linewidth=0.8)
                plot.rows.append([legend[id(group)], "switch_step", step, 1, step, 0.0, step, step])
        ax.set(title=key, xlabel="step")
        if key in (names.PTR_G_CE, names.PTR_G_PTR):
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize="small")
    fig.suptitle("PtR telemetry per step (dashed: pseudo-task switched on)")
    return plot


# --- 3. R x m heat map --------------------------------------------------------------------------


def heatmap_panels(groups: Sequence[Group], metric: str) -> dict[Any, list[Group]]:
    """The groups with R and m and the metric, one panel per setting apart from R and m."""
    panels: dict[Any, list[Group]] = defaultdict(list)
    for group in groups:
        if {PTR_R, PTR_M} <= group.settings.keys() and group.values(metric):
            others = tuple(
                sorted((k, v) for k, v in group.settings.items() if k not in (PTR_R, PTR_M))
            )
            panels[others].append(group)
    if not panels:
        raise Missing(f"no run with regularizer.R and regularizer.m has {metric} in metrics.json")
    return panels


def heatmap_r_m(groups: Sequence[Group], metric: str = names.TEST_ACC) -> Plot:
    """Per (R, m): the metric's mean (std) over seeds, coloured by the gain over the panel's
    fine-tuning baseline; a cell whose pseudo-task never switched on is hatched."""
    panels = heatmap_panels(groups, metric)
    fig = Figure(figsize=(5.5 * len(panels), 4.5), layout="constrained")
    columns = ["dataset", "backbone", "method", "R", "m", "n", "mean_pct", "std_pct"]
    plot = Plot(fig, [*columns, "ft_mean_pct", "ft_std_pct", "gain_pp", "pseudo_task_on_runs"])
    for ax, cells in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels.values(), strict=True):
        draw_panel(ax, fig, plot, cells, metric)
    return plot


def draw_panel(ax: Any, fig: Figure, plot: Plot, cells: list[Group], metric: str) -> None:
    baseline = cells[0].baseline  # one for all: the cells differ only in R and m
    ft = baseline.values(metric) if baseline is not None else []
    ft_mean, ft_std = mean_std(ft) if ft else (np.nan, np.nan)
    rs = sorted({c.settings[PTR_R] for c in cells}, key=sort_value)
    ms = sorted({c.settings[PTR_M] for c in cells}, key=sort_value)
    gain = np.full((len(rs), len(ms)), np.nan)
    for cell in cells:
        values = cell.values(metric)
        mean, std = mean_std(values)
        i, j = rs.index(cell.settings[PTR_R]), ms.index(cell.settings[PTR_M])
        gain[i, j] = mean - ft_mean if ft else mean
        text = f"{mean:.2f}\n({std:.2f})\nn={len(values)}"
        if cell.never_switched_on:
            text += "\nnever on"
            ax.add_patch(never_on_patch(j, i))
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=8,
            path_effects=[withStroke(linewidth=2.5, foreground="white")],
        )  # any background
        on = "" if cell.switched_on is None else "{}/{}".format(*cell.switched_on)
        row = [cell.dataset, cell.backbone, cell.method, cell.settings[PTR_R], cell.settings[PTR_M]]
        plot.rows.append([*row, len(values), mean, std, ft_mean, ft_std, mean - ft_mean, on])
    span = np.nanmax(np.abs(gain)) or 1.0
    image = ax.imshow(
        gain,
        cmap="RdBu" if ft else "viridis",
        vmin=-span if ft else None,
        vmax=span if ft else None,
    )
    fig.colorbar(image, ax=ax, label="gain over ft (points)" if ft else f"{metric} (%)")
    ax.set(
        xticks=range(len(ms)),
        xticklabels=ms,
        yticks=range(len(rs)),
        yticklabels=rs,
        xlabel="m",
        ylabel="R",
    )
    reference = f"ft {ft_mean:.2f} ({ft_std:.2f}), n={len(ft)}" if ft else "no ft run"
    title = f"{cells[0].dataset} / {cells[0].backbone} / {without_r_m(cells[0].label)}"
    ax.set_title(f"{title}\n{metric} %: mean (std); {reference}", fontsize=9)


def without_r_m(label: str) -> str:
    """``ptr-sml1 R=3,m=1,switch=epoch`` -> ``ptr-sml1 switch=epoch``."""
    method, _, keys = label.partition(" ")
    kept = [k for k in keys.split(",") if k and not k.startswith(("R=", "m="))]
    return " ".join([method, ",".join(kept)]).strip()


def never_on_patch(x: int, y: int) -> Any:
    """A hatched cell: the pseudo-task never switched on in any of its runs."""
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="xx", edgecolor="gray", zorder=2)
