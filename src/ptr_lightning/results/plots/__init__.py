"""Figures of runs and sweeps, each a PNG with its numbers as CSV beside it.

    ptr-plots <run or sweep folder> [...] [--out DIR] [--split test|val]
    (or python -m ptr_lightning.results.plots ...)

Runs are found, grouped and labelled as the report does (:mod:`ptr_lightning.results.runs`:
only runs whose settings differ in nothing but the seed are averaged); methods are compared
with their group's fine-tuning (``ft``) baseline. Figures:

1. ``learning_curves``: train/ce (epoch mean), val/acc and the learning rate per epoch, one line
   per method (mean over seeds, band: min to max);
2. ``ptr_telemetry``: ptr/w, ptr/g_ce, ptr/g_ptr (and other ptr/* keys) per step, the epoch the
   pseudo-task switched on marked; ``ptr_diagnosis``: what the pseudo-task does to the features
   and gradients (feature mean with the targets' m, dead units, coherences, the push over the
   batch and at the weights against 1/R, their cosine, the pull share, CE around the switch);
3. ``heatmap_R_m``: the metric's mean (std) per (R, m), coloured by its gain over ft (a
   hatched "never on" cell: the pseudo-task never switched on in its runs);
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import writable
from ptr_lightning.results.plots.diagnosis import ptr_diagnosis
from ptr_lightning.results.plots.figure import Missing, Plot
from ptr_lightning.results.plots.predictions import (
    entropy_histogram,
    per_class_gain,
    rectification_counts,
    reliability,
)
from ptr_lightning.results.plots.training import heatmap_r_m, learning_curves, ptr_telemetry
from ptr_lightning.results.predictions import PredictionsError, predictions_file
from ptr_lightning.results.runs import Group, Run, folder_problem, group_runs, load_runs

DPI = 90

# --- writing -------------------------------------------------------------------------------------

FIGURES: dict[str, Callable[..., Plot]] = {
    "learning_curves": learning_curves,
    "ptr_telemetry": ptr_telemetry,
    "ptr_diagnosis": ptr_diagnosis,
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
    name: str, groups: Sequence[Group], *, split: str = "test", metric: str = names.TEST_ACC
) -> Plot:
    """Figure ``name`` of :data:`FIGURES`; raises :class:`Missing` when its inputs are not there."""
    kwargs: dict[str, Any] = {}
    if name in NEEDS_SPLIT:
        kwargs["split"] = split
    if name in NEEDS_METRIC:
        kwargs["metric"] = metric
    return FIGURES[name](groups, **kwargs)


@dataclass
class Written:
    """What :func:`write_all` did: each figure's PNG, or why it was skipped; and the
    predictions files it left out, with why."""

    figures: dict[str, Path | str]
    left_out: dict[Path, str]


def write_all(
    folders: Sequence[Path],
    out: Path,
    *,
    split: str = "test",
    metric: str = names.TEST_ACC,
    runs: Sequence[Run] | None = None,
) -> Written:
    """Every figure for the runs below ``folders`` (or ``runs``, already loaded from them) into
    ``out``. A figure whose inputs are missing is skipped (saying what it lacked); an unreadable
    predictions file leaves that run out of the figures (naming the file), the others go on."""
    groups = group_runs(runs if runs is not None else load_runs(folders))
    figures: dict[str, Path | str] = {}
    for name in FIGURES:
        try:
            figures[name] = save(make(name, groups, split=split, metric=metric), out, name)
        except (Missing, PredictionsError) as missing:
            figures[name] = str(missing)
    left_out = {
        predictions_file(run.path, split): str(problem)
        for group in groups
        for run in group.runs
        if isinstance(problem := run.read_predictions.get(split), PredictionsError)
    }
    return Written(figures, left_out)


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


def print_written(written: Written) -> None:
    for path, problem in written.left_out.items():
        print(f"left out {path}: {problem}")
    for name, result in written.figures.items():
        if isinstance(result, Path):
            print(f"wrote {result} and {result.with_suffix('.csv').name}")
        else:
            print(f"skipped {name}.png: {result}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptr-plots", description=__doc__.split("\n\n")[0])
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
    problem = folder_problem(args.folders)
    if problem:
        print(f"plots: {problem}", file=sys.stderr)
        return 1
    out = args.out or args.folders[0] / names.PLOTS_DIR
    problem = writable(out)
    if problem:
        print(
            f"plots: cannot write into {out} ({problem}); give --out a folder you can write",
            file=sys.stderr,
        )
        return 1
    written = write_all(args.folders, out, split=args.split, metric=args.metric)
    print_written(written)
    return 0 if any(isinstance(r, Path) for r in written.figures.values()) else 1


__all__ = ["FIGURES", "Missing", "Plot", "Written", "make", "newest_sweep", "write_all"]
