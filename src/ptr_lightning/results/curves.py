"""A run's logged metrics as series, read from its CSV logs (a resumed run's earlier ones too)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptr_lightning.core import names


@dataclass(frozen=True)
class Series:
    """One metric over training: the global step and epoch of each value."""

    step: np.ndarray
    epoch: np.ndarray
    value: np.ndarray


def csv_files(run: Path) -> list[Path]:
    """``csv/metrics.before-resume-*.csv`` (oldest first), then ``csv/metrics.csv``."""
    current = run / names.CSV_METRICS
    earlier = sorted(
        current.parent.glob(names.CSV_BEFORE_RESUME),
        key=lambda p: int(p.stem.rsplit("-", 1)[-1]),
    )
    return [*earlier, current] if current.is_file() else earlier


def read_series(run: Path) -> dict[str, Series]:
    """Every logged metric of run folder ``run``; empty when it has no CSV logs.

    A row without an epoch (the learning rate, logged as an epoch starts) takes the epoch of
    the next row that has one. Rows a resumed run logged again (same step) replace the earlier
    ones, so each step appears once.
    """
    rows: list[dict[str, str]] = []
    for path in csv_files(run):
        with open(path, newline="") as f:
            # A live run may be part-way through appending its last row.
            rows += [row for row in csv.DictReader(f) if (row.get(names.STEP) or "").isdigit()]
    epochs = [number(row.get(names.EPOCH)) for row in rows]
    next_epoch = math.nan
    for i in reversed(range(len(rows))):
        if epochs[i] is None:
            epochs[i] = next_epoch
        else:
            next_epoch = epochs[i]
    values: dict[str, dict[int, tuple[float, float]]] = {}
    for row, epoch in zip(rows, epochs, strict=True):
        step = int(row[names.STEP])
        for key, text in row.items():
            value = None if key in (names.STEP, names.EPOCH) else number(text)
            if value is not None:
                values.setdefault(key, {})[step] = (epoch, value)
    series = {}
    for key, by_step in values.items():
        steps = np.array(sorted(by_step))
        epoch_value = np.array([by_step[s] for s in steps]).reshape(-1, 2)
        series[key] = Series(steps, epoch_value[:, 0], epoch_value[:, 1])
    return series


def number(text: str | None) -> float | None:
    """A CSV cell as a number; None when empty or cut short (a row being written)."""
    try:
        return float(text) if text else None
    except ValueError:
        return None
