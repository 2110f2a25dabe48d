"""The PtR diagnosis figure: what the pseudo-task does to the features and to the gradients,
per method (mean over seeds, band: min to max), from the telemetry of its runs
(docs/diagnosing-ptr.md). Fine-tuning shows what the features and the CE do without it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ptr_lightning.core import names
from ptr_lightning.core.config_keys import PTR_R, PTR_TARGETS
from ptr_lightning.results.curves import Series
from ptr_lightning.results.plots.figure import Band, Missing, Plot, band_over_runs, legend_names
from ptr_lightning.results.plots.training import switch_step
from ptr_lightning.results.runs import Group, Run

# The targets' mean is m for every kind but `centred` (rep + noise): no m line for it.
NO_TARGET_MEAN = "centred"


@dataclass(frozen=True)
class Curve:
    """A logged key, or the ratio of two at the steps both were logged; its line style."""

    key: str
    over: str | None = None  # the denominator of a ratio
    style: str = "-"

    @property
    def name(self) -> str:
        return f"{self.key} / {self.over}" if self.over else self.key

    def series(self, run: Run) -> Series | None:
        top = run.series.get(self.key)
        if self.over is None or top is None:
            return top
        return ratio(top, run.series.get(self.over))


@dataclass(frozen=True)
class Panel:
    title: str
    curves: tuple[Curve, ...]
    at_one_over_r: bool = False  # a dotted line at 1/R per method
    log: bool = False
    at_zero: bool = False  # a grey line at 0


SUM_RATIO = Curve(names.GRAD_SUM_PTR, names.GRAD_SUM_CE)
PARAM_RATIO = Curve(names.GRAD_PARAM_PTR, names.GRAD_PARAM_CE)
TARGETS_M = Curve(names.PTR_M, style=":")
PANELS = (
    Panel("feat/mean (dotted: the targets' m)", (Curve(names.FEAT_MEAN), TARGETS_M)),
    Panel("feat/zero_frac", (Curve(names.FEAT_ZERO_FRAC),)),
    Panel(
        "grad/coherence (solid: CE, dashed: PtR)",
        (Curve(names.GRAD_COHERENCE_CE), Curve(names.GRAD_COHERENCE_PTR, style="--")),
    ),
    Panel("train/ce around the switch", (Curve(names.TRAIN_CE),)),
    Panel(f"{SUM_RATIO.name}\n(dotted: 1/R)", (SUM_RATIO,), at_one_over_r=True, log=True),
    Panel(f"{PARAM_RATIO.name}\n(dotted: 1/R)", (PARAM_RATIO,), at_one_over_r=True, log=True),
    Panel("grad/param_cos", (Curve(names.GRAD_PARAM_COS),), at_zero=True),
    Panel(names.PTR_PULL_FRAC, (Curve(names.PTR_PULL_FRAC),)),
)


def ratio(top: Series, bottom: Series | None) -> Series | None:
    """``top / bottom`` at the steps both have (and ``bottom`` is not 0)."""
    if bottom is None:
        return None
    steps, i, j = np.intersect1d(top.step, bottom.step, return_indices=True)
    keep = bottom.value[j] != 0
    return Series(steps[keep], top.epoch[i][keep], top.value[i][keep] / bottom.value[j][keep])


def around_switch(groups: Sequence[Group]) -> tuple[float, float] | None:
    """The steps ``train/ce_around_switch`` spans over all runs, if any run has it."""
    steps = [
        s
        for g in groups
        for r in g.runs
        for s in getattr(r.series.get(names.TRAIN_CE_AROUND_SWITCH), "step", [])
    ]
    return (float(min(steps)), float(max(steps))) if steps else None


def ce_series(run: Run, window: tuple[float, float] | None) -> Series | None:
    """``train/ce`` in the window around the switch: from the run's record of every step there
    (``train/ce_around_switch``, the same values), else as logged (fine-tuning has no switch),
    cut to the window."""
    series = run.series.get(names.TRAIN_CE_AROUND_SWITCH) or run.series.get(names.TRAIN_CE)
    if series is None or window is None:
        return series
    inside = (series.step >= window[0]) & (series.step <= window[1])
    return Series(series.step[inside], series.epoch[inside], series.value[inside])


def curve_series(curve: Curve, group: Group, window: tuple[float, float] | None) -> list[Series]:
    if curve.key == names.TRAIN_CE:
        found = [ce_series(run, window) for run in group.runs]
    elif curve is TARGETS_M and group.settings.get(PTR_TARGETS) == NO_TARGET_MEAN:
        return []
    else:
        found = [curve.series(run) for run in group.runs]
    return [s for s in found if s is not None and len(s.step)]


def ptr_diagnosis(groups: Sequence[Group]) -> Plot:
    """Per method, the telemetry that tells what the pseudo-task spends its budget on: the
    features' mean (with the targets' m) and dead units, the gradients' coherence, the push
    PtR adds over the batch and at the weights against 1/R, their cosine, the pull share, and
    the CE around the switch; the switch dashed."""
    drawn = [g for g in groups if any(names.FEAT_MEAN in r.series for r in g.runs)]
    if not drawn:
        raise Missing(
            f"no run's {names.CSV_METRICS} has {names.FEAT_MEAN} (telemetry.every_n_steps=0)"
        )
    legend = legend_names(drawn)
    cycle = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {id(g): cycle[i % len(cycle)] for i, g in enumerate(drawn)}
    fig = Figure(figsize=(17, 8.5), layout="constrained")
    plot = Plot(fig, ["method", "metric", "step", *Band.COLUMNS])
    window = around_switch(drawn)
    axes = list(fig.subplots(2, 4).flat)
    for ax, panel in zip(axes, PANELS, strict=True):
        for group in drawn:
            draw_group(ax, plot, panel, group, (legend[id(group)], colors[id(group)]), window)
        style_axes(ax, panel, axes[0])
    handles = [Line2D([], [], color=colors[id(g)]) for g in drawn]
    labels = [legend[id(g)] for g in drawn]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(drawn), 4))
    fig.suptitle(
        "PtR diagnosis: telemetry per step, mean over seeds, band min to max "
        "(dashed vertical: the pseudo-task switched on)"
    )
    return plot


def style_axes(ax: Any, panel: Panel, first: Any) -> None:
    """Title, grid, scale, the 0 line; the steps shared with the first panel (the CE keeps
    its window around the switch)."""
    ax.set(title=panel.title, xlabel="step")
    ax.grid(alpha=0.3)
    if panel.log and ax.has_data():
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 0.1, 0.2, 0.5, 1
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    if panel.at_zero:
        ax.axhline(0, color="grey", linewidth=0.8)
    if ax is not first and panel.curves[0].key != names.TRAIN_CE:
        ax.sharex(first)


def draw_group(
    ax: Any,
    plot: Plot,
    panel: Panel,
    group: Group,
    look: tuple[str, str],
    window: tuple[float, float] | None,
) -> None:
    """One method's curves in one panel (``look``: its label and colour), with its switch steps
    and, where the panel asks, its 1/R."""
    label, color = look
    drawn = False
    for curve in panel.curves:
        series = curve_series(curve, group, window)
        if not series:
            continue
        band = band_over_runs(series, by="step")
        band.draw(ax, label, color=color, linestyle=curve.style, linewidth=1, marker=".")
        plot.rows += [[label, curve.name, *row] for row in band.rows()]
        drawn = True
    if not drawn:
        return
    for step in sorted({s for s in map(switch_step, group.runs) if s is not None}):
        ax.axvline(step, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
    r = group.settings.get(PTR_R)
    if panel.at_one_over_r and r:
        ax.axhline(1 / r, color=color, linestyle=":", linewidth=1.2)
        plot.rows.append([label, f"1/R ({panel.curves[0].name})", "", 1, 1 / r, 0.0, 1 / r, 1 / r])
