"""Figures of ft vs PtR from the predictions: per-class gain, the paper's Section 4
(entropy, rectifications) and a reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ptr_lightning import names
from ptr_lightning.analysis import aligned, entropy_bits, rectifications
from ptr_lightning.plots.runs import Missing, Plot, RunInfo, by_label
from ptr_lightning.report import (
    BASELINE,
    seed_key,
)

PTR = "ptr"  # the regularizer the PtR figures are about
ENTROPY_BINS = 20


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
    ax.set(xlabel="prediction entropy (bits)", ylabel="images", yscale="log")
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
