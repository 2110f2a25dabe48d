"""What every figure is made of: the figure with its numbers, and bands over seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure

from ptr_lightning.results.curves import Series
from ptr_lightning.results.runs import Group, mean_std


class Missing(Exception):
    """A figure's inputs are not there; the message says which."""


@dataclass
class Plot:
    """A figure and the numbers it shows (the CSV)."""

    figure: Figure
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def legend_names(groups: Sequence[Group]) -> dict[int, str]:
    """Each group's name in a legend: its label, with data set and backbone in front when the
    groups come from more than one of them."""
    with_row = len({g.row for g in groups}) > 1
    return {id(g): g.title(with_row) for g in groups}


@dataclass(frozen=True)
class Band:
    """A metric over runs (seeds) at each x: how many runs have it, mean, std, min, max."""

    x: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray

    COLUMNS: ClassVar[tuple[str, ...]] = ("n", "mean", "std", "min", "max")

    def rows(self) -> list[tuple[Any, ...]]:
        return list(zip(self.x, self.n, self.mean, self.std, self.low, self.high, strict=True))

    def draw(self, ax: Any, label: str, **kwargs: Any) -> Any:
        """The mean as a line, min to max as a band; returns the line's colour."""
        line = ax.plot(self.x, self.mean, label=label, **kwargs)[0]
        ax.fill_between(self.x, self.low, self.high, color=line.get_color(), alpha=0.2)
        return line.get_color()


def band_over_runs(series: Sequence[Series], by: str) -> Band:
    """``series`` of several runs at each ``by`` (``"epoch"`` or ``"step"``) they have."""
    values: dict[float, list[float]] = defaultdict(list)
    for s in series:
        for xi, v in zip(getattr(s, by), s.value, strict=True):
            values[float(xi)].append(float(v))
    xs = sorted(values)
    stats = np.array(
        [(len(values[x]), *mean_std(values[x]), min(values[x]), max(values[x])) for x in xs]
    ).reshape(-1, 5)
    return Band(np.array(xs), *stats.T)
