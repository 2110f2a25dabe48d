"""The paper's Section 4 analysis of how PtR changes predictions: one pair of runs, or over seeds.

    ptr-analysis <fine-tuning run folder> <PtR run folder> [--split val]
    ptr-analysis <sweep folder or run folders ...> [--split val]
    (or python -m ptr_lightning.results.analysis ...)

Each run folder holds ``predictions.npz`` (test) and ``predictions_val.npz`` (validation): per
image, the final model's class probabilities (both with the test's views, ten crops where the
data set uses them), label and id. The paper analysed the validation set (CUB200, 584 images,
ResNet-50): ``--split val`` does that; the default is the test set.
Reported, as in Zhong & Maki (CVPR 2020), Section 4:
  S   = sum of the diagonal of C, where row y of C accumulates the predicted probabilities of
        the images of class y (certainty on the correct class; the paper: 404 FT -> 425 PtR)
  S'  = sum of the off-diagonal elements of C (probability spent on wrong classes)
  H   = mean entropy of the predictions in bits (the paper: 1.33 -> 1.15)
  true / false rectifications: images the baseline got wrong and PtR right, and the reverse.

Given two run folders (or two ``.npz`` files), the first is the baseline and the output lists
the rectified images. Given anything else, every run below the folders is found and grouped as
``ptr-report`` groups them (:mod:`ptr_lightning.results.runs`); each method's run is paired with
the run of the same seed in its group's fine-tuning baseline, and the table gives mean (std)
over the pairs. Runs that cannot be paired are listed with the reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptr_lightning.core import names
from ptr_lightning.model.prediction_metrics import entropy_bits as entropy_bits_of
from ptr_lightning.results.predictions import PredictionsError, aligned, load_predictions
from ptr_lightning.results.runs import (
    Group,
    Run,
    folder_problem,
    group_runs,
    is_run_dir,
    load_runs,
    mean_std,
    sort_value,
)


def probability_confusion(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """C (K x K): row y sums the predicted class probabilities of the images labelled y."""
    matrix = np.zeros((probabilities.shape[1],) * 2, dtype=np.float64)
    np.add.at(matrix, labels, probabilities)
    return matrix


def entropy_bits(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of each prediction (row), in bits."""
    return entropy_bits_of(torch.from_numpy(probabilities.astype(np.float64))).numpy()


def mean_entropy_bits(probabilities: np.ndarray) -> float:
    return float(entropy_bits(probabilities).mean())


@dataclass(frozen=True)
class PredictionStats:
    accuracy: float
    diagonal_sum: float
    off_diagonal_sum: float
    entropy_bits: float


def prediction_stats(probabilities: np.ndarray, labels: np.ndarray) -> PredictionStats:
    matrix = probability_confusion(probabilities, labels)
    diagonal = float(np.trace(matrix))
    return PredictionStats(
        accuracy=float((probabilities.argmax(axis=1) == labels).mean()),
        diagonal_sum=diagonal,
        off_diagonal_sum=float(matrix.sum() - diagonal),
        entropy_bits=mean_entropy_bits(probabilities),
    )


def rectifications(
    baseline: np.ndarray, regularized: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of true rectifications (baseline wrong, regularized right) and false ones."""
    base_ok = baseline.argmax(axis=1) == labels
    reg_ok = regularized.argmax(axis=1) == labels
    return np.flatnonzero(~base_ok & reg_ok), np.flatnonzero(base_ok & ~reg_ok)


@dataclass(frozen=True)
class Comparison:
    """Section 4 of one baseline run and one regularized run, on the same images."""

    baseline: PredictionStats
    regularized: PredictionStats
    true_fixes: np.ndarray  # image ids the baseline got wrong and the regularized run right
    false_fixes: np.ndarray  # the reverse
    images: int


def compare(base: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> Comparison:
    """Compare two runs' predictions of one split, image by image (matched by id)."""
    reg = aligned(base, other)
    labels = base["labels"]
    true_fix, false_fix = rectifications(base["probabilities"], reg["probabilities"], labels)
    return Comparison(
        baseline=prediction_stats(base["probabilities"], labels),
        regularized=prediction_stats(reg["probabilities"], labels),
        true_fixes=base["ids"][true_fix],
        false_fixes=base["ids"][false_fix],
        images=len(labels),
    )


# --- one pair --------------------------------------------------------------------------------


def print_pair(baseline: Path, regularized: Path, split: str) -> None:
    base = load_predictions(baseline, split)
    result = compare(base, load_predictions(regularized, split))
    print(f"{result.images} {split} images, {base['probabilities'].shape[1]} classes")
    print(f"{'':12s} {'accuracy':>9s} {'S (diag)':>9s} {'S-prime':>9s} {'H (bits)':>9s}")
    for name, s in (("baseline", result.baseline), ("regularized", result.regularized)):
        print(
            f"{name:12s} {100 * s.accuracy:9.2f} {s.diagonal_sum:9.1f} "
            f"{s.off_diagonal_sum:9.1f} {s.entropy_bits:9.3f}"
        )
    print(
        f"true rectifications {len(result.true_fixes)}, "
        f"false rectifications {len(result.false_fixes)}"
    )
    for title, found in (("true", result.true_fixes), ("false", result.false_fixes)):
        if len(found):
            print(f"  {title}: " + ", ".join(str(i) for i in found[:10]))


# --- over seeds ------------------------------------------------------------------------------


@dataclass
class MethodPairs:
    """One method's group, paired seed by seed with its fine-tuning baseline group."""

    group: Group
    seeds: list[Any]
    comparisons: list[Comparison]

    @property
    def label(self) -> str:
        return self.group.label


def pair_runs(runs: Sequence[Run], split: str) -> tuple[list[MethodPairs], list[tuple[Path, str]]]:
    """Every method's runs paired with their baseline's runs; and the runs left out, with why."""
    left_out = [(run.path, run.problem or "no config") for run in runs if run.config is None]
    paired: set[Path] = set()
    pairs = []
    groups = group_runs(runs)
    for group in groups:
        if group.method == names.FINE_TUNING:
            continue
        found = MethodPairs(group, [], [])
        for run, base in seed_pairs(group, left_out):
            try:
                found.comparisons.append(compare(base.predictions(split), run.predictions(split)))
            except (OSError, ValueError) as err:
                failed = "".join(
                    f" ({r.path.name} failed: {r.error})" for r in (run, base) if r.error
                )
                left_out.append((run.path, f"{err}{failed}"))
                continue
            found.seeds.append(run.seed)
            paired.update((run.path, base.path))
        if found.comparisons:
            pairs.append(found)
    left_out += [
        (run.path, "no other method's run to compare with")
        for group in groups
        if group.method == names.FINE_TUNING
        for run in group.runs
        if run.path not in paired
    ]
    return pairs, left_out


def seed_pairs(group: Group, left_out: list[tuple[Path, str]]) -> list[tuple[Run, Run]]:
    """``(run, baseline run)`` of each seed of ``group``; the runs without one go to
    ``left_out`` with the reason."""
    baseline = {run.seed: run for run in group.baseline.runs} if group.baseline else {}
    pairs, seen = [], {}
    for run in sorted(group.runs, key=lambda r: sort_value(r.seed)):
        if run.seed in seen:
            left_out.append((run.path, f"same seed as {seen[run.seed].path}"))
        elif group.baseline is None:
            left_out.append((run.path, group.no_baseline_because or "no baseline"))
        elif run.seed not in baseline:
            left_out.append(
                (
                    run.path,
                    f"no {names.FINE_TUNING} run of seed {run.seed} in {group.baseline.title()}",
                )
            )
        else:
            pairs.append((run, baseline[run.seed]))
        seen.setdefault(run.seed, run)
    return pairs


def cell(values: Sequence[float], digits: int) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ({std:.{digits}f})"


def change_cell(base: Sequence[float], other: Sequence[float], digits: int) -> str:
    return f"{cell(base, digits)} -> {cell(other, digits)}"


SEED_COLUMNS = [
    "dataset",
    "backbone",
    "method",
    "n",
    "images",
    "accuracy % (ft -> method)",
    "S (ft -> method)",
    "H bits (ft -> method)",
    "true rect.",
    "false rect.",
    "seeds",
]


def seed_table(
    groups: Sequence[MethodPairs], left_out: Sequence[tuple[Path, str]], split: str
) -> str:
    """The Markdown table of :func:`pair_runs`' groups, then the runs left out."""
    lines = [
        f"# Section 4 on the {split} split: mean (std) over seeds, each run paired with the "
        f"{names.FINE_TUNING} run of its seed",
        "",
        "| " + " | ".join(SEED_COLUMNS) + " |",
        "|" + "|".join("---" for _ in SEED_COLUMNS) + "|",
    ]
    for g in groups:
        base = [c.baseline for c in g.comparisons]
        reg = [c.regularized for c in g.comparisons]
        images = sorted({c.images for c in g.comparisons})
        row = [
            g.group.dataset,
            g.group.backbone,
            g.label,
            str(len(g.comparisons)),
            ",".join(map(str, images)),
            change_cell([100 * s.accuracy for s in base], [100 * s.accuracy for s in reg], 2),
            change_cell([s.diagonal_sum for s in base], [s.diagonal_sum for s in reg], 1),
            change_cell([s.entropy_bits for s in base], [s.entropy_bits for s in reg], 3),
            cell([len(c.true_fixes) for c in g.comparisons], 1),
            cell([len(c.false_fixes) for c in g.comparisons], 1),
            ",".join(map(str, g.seeds)),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"## Runs left out ({len(left_out)})", ""]
    lines += [f"- `{path}`: {reason}" for path, reason in left_out] or ["- none"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptr-analysis", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="a fine-tuning and a PtR run folder (or predictions .npz); or sweep / run folders",
    )
    parser.add_argument("--split", choices=sorted(names.PREDICTIONS_FILES), default="test")
    args = parser.parse_args(argv)
    if len(args.paths) == 2 and all(p.suffix == ".npz" or is_run_dir(p) for p in args.paths):
        try:
            print_pair(*args.paths, args.split)
        except PredictionsError as err:
            print(f"analysis: {err}", file=sys.stderr)
            return 1
        return 0
    problem = folder_problem(args.paths)
    if problem:
        print(f"analysis: {problem}", file=sys.stderr)
        return 1
    groups, left_out = pair_runs(load_runs(args.paths), args.split)
    if not groups:
        where = ", ".join(map(str, args.paths))
        print(
            f"analysis: no pair of an {names.FINE_TUNING} run and another method's run with the "
            f"same seed below {where}",
            *(f"- {path}: {reason}" for path, reason in left_out),
            sep="\n",
            file=sys.stderr,
        )
        return 1
    print(seed_table(groups, left_out, args.split), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
