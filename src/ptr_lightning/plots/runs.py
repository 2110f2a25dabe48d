"""Runs as the figures see them: found, read and labelled as the report does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ptr_lightning import names
from ptr_lightning.analysis import load_predictions
from ptr_lightning.curves import Series, read_series
from ptr_lightning.report import (
    BASELINE,
    Setting,
    describe,
    find_run_dirs,
    label_settings,
    load_run,
    mean_std,
    select,
)


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


@dataclass(frozen=True)
class Band:
    """A metric over runs (seeds) at each x: how many runs have it, mean, std, min, max."""

    x: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray

    COLUMNS = ("n", "mean", "std", "min", "max")

    def rows(self) -> list[tuple[Any, ...]]:
        return list(zip(self.x, self.n, self.mean, self.std, self.low, self.high, strict=True))

    def draw(self, ax: Any, label: str, **kwargs: Any) -> Any:
        """The mean as a line, min to max as a band; returns the line's colour."""
        line = ax.plot(self.x, self.mean, label=label, **kwargs)[0]
        ax.fill_between(self.x, self.low, self.high, color=line.get_color(), alpha=0.2)
        return line.get_color()


def band_over_runs(series: Sequence[Series], by: str) -> Band:
    """``series`` of several runs at each ``by`` ("epoch" or "step") they have."""
    values: dict[float, list[float]] = defaultdict(list)
    for s in series:
        for xi, v in zip(getattr(s, by), s.value, strict=True):
            values[float(xi)].append(float(v))
    xs = sorted(values)
    stats = np.array(
        [(len(values[x]), *mean_std(values[x]), min(values[x]), max(values[x])) for x in xs]
    ).reshape(-1, 5)
    return Band(np.array(xs), *stats.T)
