"""Figures of runs and sweeps, each a PNG with its numbers as CSV beside it.

    python -m ptr_lightning.plots <run or sweep folder> [...] [--out DIR] [--split test|val]

Runs are found and labelled as the report does (:mod:`ptr_lightning.report`); methods are
compared with plain fine-tuning (``ft``) of the same data set and backbone. Figures:

1. ``learning_curves``: train/ce (epoch mean), val/acc and the learning rate per epoch, one line
   per method (mean over seeds, band: +-1 std);
2. ``ptr_telemetry``: ptr/w, ptr/g_ce, ptr/g_ptr (and other ptr/* keys) per step, the epoch the
   pseudo-task switched on marked;
3. ``heatmap_R_m``: the metric's mean (std) per (R, m), coloured by its gain over ft;
4. ``per_class_gain``: per-class accuracy of PtR minus ft, sorted;
5. ``entropy_histogram``, ``rectifications``, ``reliability``: the paper's Section 4 (entropy
   of the predictions, true and false rectifications per seed) and a reliability diagram with
   the expected calibration error, ft vs PtR.

Figures 4-5 compare ft with the PtR setting of the best mean val/acc. A figure whose inputs are
missing is skipped with one line naming what it lacked.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ptr_lightning import names
from ptr_lightning.analysis import aligned, entropy_bits, load_predictions, rectifications
from ptr_lightning.curves import Series, read_series
from ptr_lightning.report import (
    BASELINE,
    Setting,
    describe,
    find_run_dirs,
    label_settings,
    load_run,
    mean_std,
    seed_key,
    select,
)

DPI = 90
PTR = "ptr"  # the regularizer the PtR figures are about
CURVES = (
    (names.TRAIN_CE_EPOCH, "train/ce (epoch mean)"),
    (names.VAL_ACC, "val/acc"),
    (f"{names.LR}/backbone", "learning rate (backbone)"),
)
TELEMETRY = (names.PTR_W, names.PTR_G_CE, names.PTR_G_PTR)
ENTROPY_BINS = 20


class Missing(Exception):
    """A figure's inputs are not there; the message says which."""


@dataclass
class RunInfo:
    """A finished or unfinished run as the figures see it."""

    path: Path
    setting: Setting
    label: str
    seed: Any
    metrics: dict[str, Any] | None

    @cached_property
    def series(self) -> dict[str, Series]:
        return read_series(self.path)

    def predictions(self, split: str) -> dict[str, np.ndarray] | None:
        path = self.path / names.PREDICTIONS_FILES[split]
        return load_predictions(path) if path.is_file() else None


@dataclass
class Plot:
    """A figure and the numbers it shows (the CSV)."""

    figure: Figure
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def load_runs(folders: Iterable[Path]) -> list[RunInfo]:
    """Every readable run folder below ``folders``, labelled as in the report."""
    runs = [load_run(path) for path in find_run_dirs(folders)]
    runs = [run for run in runs if run.config is not None]
    settings = [describe(run) for run in runs]
    labels = label_settings(settings)
    return [
        RunInfo(run.path, setting, labels[setting], select(run.config, "seed"), run.metrics)
        for run, setting in zip(runs, settings, strict=True)
    ]


def by_label(runs: Iterable[RunInfo]) -> dict[str, list[RunInfo]]:
    """Runs grouped by method label, ft first, in a stable order."""
    groups: dict[str, list[RunInfo]] = defaultdict(list)
    for run in runs:
        groups[run.label].append(run)
    return dict(sorted(groups.items(), key=lambda kv: (kv[1][0].setting.method != BASELINE, kv[0])))


def mean_over_runs(
    series: Sequence[Series], by: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x (epoch or step), mean, std and n over the runs that have each x."""
    values: dict[float, list[float]] = defaultdict(list)
    for s in series:
        x = s.epoch if by == "epoch" else s.step
        for xi, v in zip(x, s.value, strict=True):
            values[float(xi)].append(float(v))
    xs = np.array(sorted(values))
    stats = np.array([(*mean_std(values[x]), len(values[x])) for x in xs]).reshape(-1, 3)
    return xs, stats[:, 0], stats[:, 1], stats[:, 2]


# --- 1. learning curves --------------------------------------------------------------------------


def learning_curves(runs: Sequence[RunInfo]) -> Plot:
    groups = {k: v for k, v in by_label(runs).items() if any(r.series for r in v)}
    if not groups:
        raise Missing(f"no run has {names.CSV_METRICS}")
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    plot = Plot(fig, ["method", "metric", "epoch", "n", "mean", "std"])
    for ax, (key, title) in zip(fig.subplots(1, len(CURVES)), CURVES, strict=True):
        for label, members in groups.items():
            series = [r.series[key] for r in members if key in r.series]
            if not series:
                continue
            x, mean, std, n = mean_over_runs(series, by="epoch")
            line = ax.plot(x, mean, label=f"{label} (n={len(series)})")[0]
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            plot.rows += [[label, key, *row] for row in zip(x, n, mean, std, strict=True)]
        ax.set(title=title, xlabel="epoch")
        if key.startswith(names.LR):
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize="small")
    fig.suptitle("learning curves: mean over seeds, band +-1 std")
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
    plot = Plot(fig, ["method", "metric", "step", "n", "mean", "std"])
    for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys, strict=True):
        for label, members in by_label(with_ptr).items():
            series = [r.series[key] for r in members if key in r.series]
            if not series:
                continue
            x, mean, std, n = mean_over_runs(series, by="step")
            line = ax.plot(x, mean, label=label, linewidth=1)[0]
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            plot.rows += [[label, key, *row] for row in zip(x, n, mean, std, strict=True)]
            for step in sorted({s for s in map(switch_step, members) if s is not None}):
                ax.axvline(step, color=line.get_color(), linestyle="--", linewidth=0.8)
                plot.rows.append([label, "switch_step", step, 1, step, 0.0])
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


# --- 4-5. ft vs PtR from the predictions ---------------------------------------------------------


@dataclass
class Comparison:
    """Fine-tuning runs and the runs of the best PtR setting (by mean val/acc), one row."""

    ft: list[RunInfo]
    ptr: list[RunInfo]
    ptr_label: str
    split: str

    def title(self) -> str:
        s = self.ft[0].setting
        return f"{s.dataset} / {s.backbone}, {self.split}: ft vs {self.ptr_label}"


def comparison(runs: Sequence[RunInfo], split: str = "test") -> Comparison:
    """ft and PtR runs of one (data set, backbone) with ``split``'s predictions."""
    file = names.PREDICTIONS_FILES[split]
    with_files = [r for r in runs if (r.path / file).is_file()]
    ft = [r for r in with_files if r.setting.method == BASELINE]
    if not ft:
        raise Missing(f"no fine-tuning (ft) run has {file}")
    ft_row = (ft[0].setting.dataset, ft[0].setting.backbone)
    ptr = [
        r
        for r in with_files
        if r.setting.regularizer == PTR and (r.setting.dataset, r.setting.backbone) == ft_row
    ]
    if not ptr:
        raise Missing(f"no PtR run of {ft_row[0]} / {ft_row[1]} has {file}")
    groups = by_label(ptr)

    def val_acc(label: str) -> float:
        values = [r.metrics.get(names.VAL_ACC, np.nan) for r in groups[label] if r.metrics]
        return float(np.nanmean(values)) if values else -np.inf

    best = max(groups, key=val_acc)
    ft = [r for r in ft if (r.setting.dataset, r.setting.backbone) == ft_row]
    return Comparison(ft, groups[best], best, split)


def pooled(runs: Sequence[RunInfo], split: str) -> tuple[np.ndarray, np.ndarray]:
    data = [r.predictions(split) for r in runs]
    return (
        np.concatenate([d["probabilities"] for d in data]),
        np.concatenate([d["labels"] for d in data]),
    )


def per_class_gain(runs: Sequence[RunInfo], split: str = "test") -> Plot:
    from ptr_lightning.evaluation import per_class_accuracy

    pair = comparison(runs, split)
    per_method = []
    for members in (pair.ft, pair.ptr):
        accs = []
        for r in members:
            data = r.predictions(split)
            accs.append(per_class_accuracy(data["probabilities"], data["labels"])[1])
        per_method.append(np.nanmean(accs, axis=0))
    reference = pair.ft[0].predictions(split)
    classes = [str(c) for c in reference["class_names"]]
    counts = np.bincount(reference["labels"], minlength=len(classes))
    gain = 100 * (per_method[1] - per_method[0])
    order = np.argsort(-np.nan_to_num(gain, nan=-np.inf), kind="stable")
    fig = Figure(figsize=(max(6, 0.25 * len(classes)), 4), layout="constrained")
    ax = fig.subplots()
    colors = ["tab:blue" if g >= 0 else "tab:red" for g in gain[order]]
    ax.bar(range(len(order)), gain[order], color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(order)), [classes[i] for i in order], rotation=90, fontsize=7)
    ax.set(ylabel="accuracy gain (points)", xlabel="class, sorted by gain")
    ax.set_title(
        f"per-class accuracy gain, {pair.title()}\n(mean over {len(pair.ft)} ft and "
        f"{len(pair.ptr)} PtR runs; PtR setting of the best mean val/acc)",
        fontsize=9,
    )
    plot = Plot(fig, ["class", "images", "ft_acc_pct", "ptr_acc_pct", "gain_pp"])
    plot.rows = [
        [classes[i], int(counts[i]), 100 * per_method[0][i], 100 * per_method[1][i], gain[i]]
        for i in order
    ]
    return plot


def entropy_histogram(runs: Sequence[RunInfo], split: str = "test") -> Plot:
    pair = comparison(runs, split)
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    entropies = {"ft": entropy_bits(pooled(pair.ft, split)[0])}
    entropies[pair.ptr_label] = entropy_bits(pooled(pair.ptr, split)[0])
    top = max(float(e.max()) for e in entropies.values()) or 1.0
    bins = np.linspace(0.0, top, ENTROPY_BINS + 1)
    plot = Plot(fig, ["method", "bin_lower_bits", "bin_upper_bits", "images", "mean_entropy_bits"])
    for label, values in entropies.items():
        counts, _ = np.histogram(values, bins=bins)
        ax.hist(values, bins=bins, alpha=0.5, label=f"{label}: mean {values.mean():.3f} bits")
        ax.axvline(values.mean(), linestyle="--", color=ax.patches[-1].get_facecolor()[:3])
        plot.rows += [
            [label, lo, hi, int(c), float(values.mean())]
            for lo, hi, c in zip(bins[:-1], bins[1:], counts, strict=True)
        ]
    ax.set(xlabel="prediction entropy (bits)", ylabel="images")
    ax.legend(fontsize="small")
    ax.set_title(f"entropy of the predictions (paper Sec. 4), {pair.title()}", fontsize=9)
    return plot


def rectification_counts(runs: Sequence[RunInfo], split: str = "test") -> Plot:
    pair = comparison(runs, split)
    ft_by_seed = {r.seed: r for r in pair.ft}
    pairs = [(ft_by_seed[r.seed], r) for r in pair.ptr if r.seed in ft_by_seed]
    if not pairs:
        raise Missing(f"no seed has both an ft run and a {pair.ptr_label} run with predictions")
    plot = Plot(
        Figure(figsize=(6, 4), layout="constrained"),
        ["seed", "images", "true", "false", "ft_run", "ptr_run"],
    )
    for ft, ptr in sorted(pairs, key=lambda p: seed_key(p[0].seed)):
        base = ft.predictions(split)
        other = aligned(base, ptr.predictions(split))
        true_fix, false_fix = rectifications(
            base["probabilities"], other["probabilities"], base["labels"]
        )
        plot.rows.append(
            [
                ft.seed,
                len(base["labels"]),
                len(true_fix),
                len(false_fix),
                str(ft.path),
                str(ptr.path),
            ]
        )
    ax = plot.figure.subplots()
    x = np.arange(len(plot.rows))
    ax.bar(x - 0.2, [row[2] for row in plot.rows], 0.4, label="true (ft wrong, PtR right)")
    ax.bar(x + 0.2, [row[3] for row in plot.rows], 0.4, label="false (ft right, PtR wrong)")
    ax.set_xticks(x, [f"seed {row[0]}" for row in plot.rows])
    ax.set(ylabel="images")
    ax.legend(fontsize="small")
    ax.set_title(f"rectifications (paper Sec. 4), {pair.title()}", fontsize=9)
    return plot


def reliability(runs: Sequence[RunInfo], split: str = "test") -> Plot:
    from ptr_lightning.evaluation import expected_calibration_error, reliability_bins

    pair = comparison(runs, split)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    plot = Plot(
        fig, ["method", "bin_lower", "bin_upper", "images", "confidence", "accuracy", "ece"]
    )
    for ax, (label, members) in zip(
        fig.subplots(1, 2), (("ft", pair.ft), (pair.ptr_label, pair.ptr)), strict=True
    ):
        probabilities, labels = pooled(members, split)
        bins = reliability_bins(probabilities, labels)
        ece = expected_calibration_error(probabilities, labels)
        filled = bins.count > 0
        width = bins.upper - bins.lower
        ax.bar(
            bins.lower[filled],
            bins.accuracy[filled],
            width=np.maximum(width[filled], 0.01),
            align="edge",
            edgecolor="black",
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="calibrated")
        ax.plot(
            bins.confidence[filled],
            bins.accuracy[filled],
            "o",
            color="tab:orange",
            markersize=4,
            label="mean confidence",
        )
        ax.set(
            xlim=(0, 1.02), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy"
        )
        ax.set_title(
            f"{label}: ECE {100 * ece:.2f}% ({len(labels)} images, {len(members)} runs)", fontsize=9
        )
        ax.legend(fontsize="small", loc="upper left")
        plot.rows += [
            [
                label,
                bins.lower[i],
                bins.upper[i],
                int(bins.count[i]),
                bins.confidence[i],
                bins.accuracy[i],
                ece,
            ]
            for i in np.flatnonzero(filled)
        ]
    fig.suptitle(f"reliability, {pair.title()}", fontsize=10)
    return plot


# --- writing -------------------------------------------------------------------------------------

FIGURES: dict[str, Callable[..., Plot]] = {
    "learning_curves": learning_curves,
    "ptr_telemetry": ptr_telemetry,
    "heatmap_R_m": heatmap_r_m,
    "per_class_gain": per_class_gain,
    "entropy_histogram": entropy_histogram,
    "rectifications": rectification_counts,
    "reliability": reliability,
}
NEEDS_SPLIT = {"per_class_gain", "entropy_histogram", "rectifications", "reliability"}
NEEDS_METRIC = {"heatmap_R_m"}


def save(plot: Plot, out: Path, name: str) -> Path:
    """``<out>/<name>.png`` and ``<out>/<name>.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    plot.figure.savefig(png, dpi=DPI)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(plot.columns)
        writer.writerows(plot.rows)
    return png


def make(
    name: str, runs: Sequence[RunInfo], *, split: str = "test", metric: str = names.TEST_ACC
) -> Plot:
    """Figure ``name`` of :data:`FIGURES`; raises :class:`Missing` when its inputs are not there."""
    kwargs: dict[str, Any] = {}
    if name in NEEDS_SPLIT:
        kwargs["split"] = split
    if name in NEEDS_METRIC:
        kwargs["metric"] = metric
    return FIGURES[name](runs, **kwargs)


def write_all(
    folders: Sequence[Path], out: Path, *, split: str = "test", metric: str = names.TEST_ACC
) -> dict[str, Path | str]:
    """Every figure for the runs below ``folders`` into ``out``: its PNG path, or why not."""
    runs = load_runs(folders)
    written: dict[str, Path | str] = {}
    for name in FIGURES:
        try:
            written[name] = save(make(name, runs, split=split, metric=metric), out, name)
        except Missing as missing:
            written[name] = str(missing)
    return written


def newest_sweep(*roots: Path) -> Path:
    """The newest ``multirun/<date>/<time>`` folder below ``roots`` (default: ``./multirun``
    and ``../multirun``, for a notebook in ``notebooks/``)."""
    roots = roots or (Path("multirun"), Path("..") / "multirun")
    sweeps = [p for root in roots if root.is_dir() for p in root.glob("*/*") if p.is_dir()]
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep folder below {', '.join(map(str, roots))}: run a multirun first "
            "(python -m ptr_lightning -m ...) or give the folders"
        )
    return max(sweeps, key=lambda p: (p.parent.name, p.name))


def print_written(written: dict[str, Path | str]) -> None:
    for name, result in written.items():
        if isinstance(result, Path):
            print(f"wrote {result} and {result.with_suffix('.csv').name}")
        else:
            print(f"skipped {name}.png: {result}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ptr_lightning.plots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument(
        "--out", type=Path, help="where the figures go (default: <first folder>/plots)"
    )
    parser.add_argument(
        "--split",
        choices=sorted(names.PREDICTIONS_FILES),
        default="test",
        help="predictions of figures 4-5",
    )
    parser.add_argument("--metric", default=names.TEST_ACC, help="metrics.json key of the heat map")
    args = parser.parse_args(argv)
    missing = [folder for folder in args.folders if not folder.is_dir()]
    if missing:
        print(f"plots: no such folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    written = write_all(
        args.folders, args.out or args.folders[0] / "plots", split=args.split, metric=args.metric
    )
    print_written(written)
    return 0 if any(isinstance(r, Path) for r in written.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
