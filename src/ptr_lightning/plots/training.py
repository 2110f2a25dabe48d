"""Figures of training: learning curves, PtR telemetry, the R x m heat map."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from ptr_lightning import names
from ptr_lightning.plots.runs import Band, Missing, Plot, RunInfo, band_over_runs, by_label
from ptr_lightning.report import (
    BASELINE,
    mean_std,
    seed_key,
)

CURVES = (
    (names.TRAIN_CE_EPOCH, "train/ce (epoch mean)"),
    (names.VAL_ACC, "val/acc"),
    (f"{names.LR}/backbone", "learning rate (backbone)"),
)
TELEMETRY = (names.PTR_W, names.PTR_G_CE, names.PTR_G_PTR)
ENTROPY_BINS = 20


# --- 1. learning curves --------------------------------------------------------------------------


def learning_curves(runs: Sequence[RunInfo]) -> Plot:
    groups = {k: v for k, v in by_label(runs).items() if any(r.series for r in v)}
    if not groups:
        raise Missing(f"no run has {names.CSV_METRICS}")
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    plot = Plot(fig, ["method", "metric", "epoch", *Band.COLUMNS])
    for ax, (key, title) in zip(fig.subplots(1, len(CURVES)), CURVES, strict=True):
        for label, members in groups.items():
            series = [r.series[key] for r in members if key in r.series]
            if not series:
                continue
            band = band_over_runs(series, by="epoch")
            band.draw(ax, f"{label} (n={len(series)})")
            plot.rows += [[label, key, *row] for row in band.rows()]
        ax.set(title=title, xlabel="epoch")
        if key.startswith(names.LR):
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize="small")
    fig.suptitle("learning curves: mean over seeds, band: min to max")
    return plot


# --- 2. PtR telemetry ----------------------------------------------------------------------------


def switch_step(run: RunInfo) -> float | None:
    active = run.series.get(names.PTR_ACTIVE)
    if active is None or not (active.value > 0).any():
        return None
    return float(active.step[np.argmax(active.value > 0)])


def ptr_telemetry(runs: Sequence[RunInfo]) -> Plot:
    with_ptr = [r for r in runs if names.PTR_W in r.series]
    if not with_ptr:
        raise Missing(
            f"no run's {names.CSV_METRICS} has {names.PTR_W} (no PtR/FNP run, or it never "
            "switched on)"
        )
    extra = sorted(
        {k for r in with_ptr for k in r.series if k.startswith("ptr/")}
        - {*TELEMETRY, names.PTR_ACTIVE}
    )
    keys = [*TELEMETRY, *extra]
    fig = Figure(figsize=(4.2 * len(keys), 3.6), layout="constrained")
    plot = Plot(fig, ["method", "metric", "step", *Band.COLUMNS])
    for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys, strict=True):
        for label, members in by_label(with_ptr).items():
            series = [r.series[key] for r in members if key in r.series]
            if not series:
                continue
            band = band_over_runs(series, by="step")
            color = band.draw(ax, label, linewidth=1)
            plot.rows += [[label, key, *row] for row in band.rows()]
            for step in sorted({s for s in map(switch_step, members) if s is not None}):
                ax.axvline(step, color=color, linestyle="--", linewidth=0.8)
                plot.rows.append([label, "switch_step", step, 1, step, 0.0, step, step])
        ax.set(title=key, xlabel="step")
        if key in (names.PTR_G_CE, names.PTR_G_PTR):
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize="small")
    fig.suptitle("PtR telemetry per step (dashed: pseudo-task switched on)")
    return plot


# --- 3. R x m heat map ---------------------------------------------------------------------------


def finished(runs: Iterable[RunInfo], metric: str) -> list[RunInfo]:
    return [r for r in runs if r.metrics and isinstance(r.metrics.get(metric), int | float)]


def heatmap_r_m(runs: Sequence[RunInfo], metric: str = names.TEST_ACC) -> Plot:
    done = finished(runs, metric)
    swept = [r for r in done if {"R", "m"} <= dict(r.setting.hparams).keys()]
    if not swept:
        raise Missing(f"no run with regularizer.R and regularizer.m has {metric} in metrics.json")
    panels: dict[tuple[str, str, str], list[RunInfo]] = defaultdict(list)
    for r in swept:
        panels[(r.setting.dataset, r.setting.backbone, r.setting.method)].append(r)
    fig = Figure(figsize=(5.5 * len(panels), 4.5), layout="constrained")
    columns = ["dataset", "backbone", "method", "R", "m", "n", "mean_pct", "std_pct"]
    plot = Plot(fig, [*columns, "ft_mean_pct", "ft_std_pct", "gain_pp"])
    for ax, ((dataset, backbone, method), members) in zip(
        np.atleast_1d(fig.subplots(1, len(panels))), panels.items(), strict=True
    ):
        ft = [
            100 * r.metrics[metric]
            for r in done
            if r.setting.method == BASELINE
            and (r.setting.dataset, r.setting.backbone) == (dataset, backbone)
        ]
        ft_mean, ft_std = mean_std(ft) if ft else (np.nan, np.nan)
        cells: dict[tuple[float, float], list[float]] = defaultdict(list)
        for r in members:
            hp = dict(r.setting.hparams)
            cells[(hp["R"], hp["m"])].append(100 * r.metrics[metric])
        rs = sorted({k[0] for k in cells}, key=seed_key)
        ms = sorted({k[1] for k in cells}, key=seed_key)
        gain = np.full((len(rs), len(ms)), np.nan)
        for (R, m), values in sorted(cells.items()):
            mean, std = mean_std(values)
            i, j = rs.index(R), ms.index(m)
            gain[i, j] = mean - ft_mean if ft else mean
            ax.text(
                j,
                i,
                f"{mean:.2f}\n({std:.2f})\nn={len(values)}",
                ha="center",
                va="center",
                fontsize=8,
                path_effects=[withStroke(linewidth=2.5, foreground="white")],  # any background
            )
            plot.rows.append(
                [
                    dataset,
                    backbone,
                    method,
                    R,
                    m,
                    len(values),
                    mean,
                    std,
                    ft_mean,
                    ft_std,
                    mean - ft_mean,
                ]
            )
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
        ax.set_title(
            f"{dataset} / {backbone} / {method}\n{metric} %: mean (std); {reference}", fontsize=9
        )
    return plot
