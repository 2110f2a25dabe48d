"""Figures of ft vs PtR from the predictions: per-class gain, the paper's Section 4
(entropy, rectifications) and a reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ptr_lightning.core import names
from ptr_lightning.model.prediction_metrics import (
    expected_calibration_error,
    per_class_accuracy,
    reliability_bins,
)
from ptr_lightning.results.analysis import compare, entropy_bits
from ptr_lightning.results.plots.figure import Missing, Plot
from ptr_lightning.results.predictions import PredictionsError, predictions_file
from ptr_lightning.results.runs import Group, Run, mean_std, sort_value

PTR = "ptr"  # the regularizer the PtR figures are about
ENTROPY_BINS = 20


# --- 4-5. ft vs PtR from the predictions --------------------------------------------------------


@dataclass
class Comparison:
    """The PtR group of the best mean val/acc (of the first data set and backbone that has one
    with predictions) and its fine-tuning baseline: their runs with ``split``'s predictions."""

    ft: list[Run]
    ptr: list[Run]
    split: str
    group: Group

    @property
    def ptr_label(self) -> str:
        return self.group.label

    def title(self) -> str:
        return f"{self.group.dataset} / {self.group.backbone}, {self.split}: ft vs {self.ptr_label}"


def with_predictions(group: Group | None, split: str) -> list[Run]:
    """The group's runs whose ``split`` predictions can be read (the others are left out, and
    :func:`~ptr_lightning.results.plots.write_all` names their files)."""
    if group is None:
        return []
    readable = []
    for run in group.runs:
        if predictions_file(run.path, split).is_file():
            try:
                run.predictions(split)
            except PredictionsError:
                continue
            readable.append(run)
    return readable


def val_acc(group: Group) -> float:
    values = group.values(names.VAL_ACC)
    return mean_std(values)[0] if values else -np.inf


def comparison(groups: Sequence[Group], split: str = "test") -> Comparison:
    """The best PtR group (by mean val/acc) and its baseline, both with ``split``'s predictions."""
    file = names.PREDICTIONS_FILES[split]
    candidates = [
        g
        for g in groups
        if g.regularizer == PTR
        and with_predictions(g, split)
        and with_predictions(g.baseline, split)
    ]
    if not candidates:
        has_ft = any(g.method == names.FINE_TUNING and with_predictions(g, split) for g in groups)
        if not has_ft:
            raise Missing(f"no fine-tuning (ft) run has {file}")
        raise Missing(f"no PtR run with {file} has a fine-tuning baseline with {file}")
    row = min(g.row for g in candidates)
    best = max((g for g in candidates if g.row == row), key=val_acc)
    ft, ptr = with_predictions(best.baseline, split), with_predictions(best, split)
    return Comparison(ft, ptr, split, best)


def pooled(runs: Sequence[Run], split: str) -> tuple[np.ndarray, np.ndarray]:
    data = [r.predictions(split) for r in runs]
    return (
        np.concatenate([d["probabilities"] for d in data]),
        np.concatenate([d["labels"] for d in data]),
    )


def per_class_gain(groups: Sequence[Group], split: str = "test") -> Plot:
    pair = comparison(groups, split)
    per_method = []
    for members in (pair.ft, pair.ptr):
        accs = []
        for r in members:
            data = r.predictions(split)
            accs.append(per_class_accuracy(data["probabilities"], data["labels"])[1])
        per_method.append(np.nanmean(accs, axis=0))
    reference = pair.ft[0].predictions(split)
    classes = [
        str(c) for c in reference.get("class_names", range(reference["probabilities"].shape[1]))
    ]
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


def entropy_histogram(groups: Sequence[Group], split: str = "test") -> Plot:
    pair = comparison(groups, split)
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
    ax.set(xlabel="prediction entropy (bits)", ylabel="images", yscale="log")
    ax.legend(fontsize="small")
    ax.set_title(f"entropy of the predictions (paper Sec. 4), {pair.title()}", fontsize=9)
    return plot


def rectification_counts(groups: Sequence[Group], split: str = "test") -> Plot:
    pair = comparison(groups, split)
    ft_by_seed = {r.seed: r for r in pair.ft}
    pairs = [(ft_by_seed[r.seed], r) for r in pair.ptr if r.seed in ft_by_seed]
    if not pairs:
        raise Missing(f"no seed has both an ft run and a {pair.ptr_label} run with predictions")
    plot = Plot(
        Figure(figsize=(6, 4), layout="constrained"),
        ["seed", "images", "true", "false", "ft_run", "ptr_run"],
    )
    for ft, ptr in sorted(pairs, key=lambda p: sort_value(p[0].seed)):
        try:
            counted = compare(ft.predictions(split), ptr.predictions(split))
        except PredictionsError:  # another split or data set: no rectifications to count
            continue
        plot.rows.append(
            [
                ft.seed,
                counted.images,
                len(counted.true_fixes),
                len(counted.false_fixes),
                str(ft.path),
                str(ptr.path),
            ]
        )
    if not plot.rows:
        raise Missing(f"no ft and {pair.ptr_label} runs of one seed tested the same images")
    ax = plot.figure.subplots()
    x = np.arange(len(plot.rows))
    ax.bar(x - 0.2, [row[2] for row in plot.rows], 0.4, label="true (ft wrong, PtR right)")
    ax.bar(x + 0.2, [row[3] for row in plot.rows], 0.4, label="false (ft right, PtR wrong)")
    ax.set_xticks(x, [f"seed {row[0]}" for row in plot.rows])
    ax.set(ylabel="images")
    ax.legend(fontsize="small")
    ax.set_title(f"rectifications (paper Sec. 4), {pair.title()}", fontsize=9)
    return plot


def reliability(groups: Sequence[Group], split: str = "test") -> Plot:
    pair = comparison(groups, split)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    plot = Plot(
        fig, ["method", "bin_lower", "bin_upper", "images", "confidence", "accuracy", "ece"]
    )
    sides = (("ft", pair.ft), (pair.ptr_label, pair.ptr))
    for ax, (label, members) in zip(fig.subplots(1, 2), sides, strict=True):
        probabilities, labels = pooled(members, split)
        bins = reliability_bins(probabilities, labels)
        ece = expected_calibration_error(probabilities, labels)
        draw_reliability(ax, bins)
        ax.set_title(
            f"{label}: ECE {100 * ece:.2f}% ({len(labels)} images, {len(members)} runs)", fontsize=9
        )
        plot.rows += [
            [label, bins.lower[i], bins.upper[i], int(bins.count[i]), bins.confidence[i]]
            + [bins.accuracy[i], ece]
            for i in np.flatnonzero(bins.count > 0)
        ]
    fig.suptitle(f"reliability, {pair.title()}", fontsize=10)
    return plot


def draw_reliability(ax, bins) -> None:
    """Accuracy per confidence bin as bars, the diagonal, and each bin's mean confidence."""
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
    ax.set(xlim=(0, 1.02), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy")
    ax.legend(fontsize="small", loc="upper left")
