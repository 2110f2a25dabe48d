"""Runs as every results tool sees them: one record per run folder, one grouping of comparable
runs, one rule for a group's fine-tuning baseline.

Runs are comparable when every compared setting is equal (:mod:`ptr_lightning.core.config_keys`:
all but the seeds and plumbing, so data set and split, backbone, weights, method and all its
keys, epochs, schedule, learning rate, ...). Each set of comparable runs is a :class:`Group`;
runs that are not comparable are never averaged, they form groups of their own. A group's label
is its method plus the settings that vary between the groups of its data set and backbone
(``ptr-sml1 R=3,m=1``, ``ft max_epochs=6``). Its baseline is the fine-tuning (``ft``) group whose
settings equal its own in everything outside the method (:data:`config_keys.METHOD`).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.config_keys import PTR_AXES, flatten, is_compared, is_method, short_keys
from ptr_lightning.results.curves import Series, read_series
from ptr_lightning.results.predictions import PredictionsError, load_predictions

BASELINE = names.FINE_TUNING
# Folders a run writes below itself that never hold other runs.
SKIP_DIRS = frozenset(
    {names.WANDB_DIR, names.CSV_DIR, str(names.LAST_CHECKPOINT.parent), names.HYDRA_DIR}
)
ROW_KEYS = ("dataset.name", "model.arch")  # a table's row: data set and backbone
MAX_ERROR_LINE = 200


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run folder as found on disk; ``config`` / ``metrics`` are None when unreadable."""

    path: Path
    config: DictConfig | None
    metrics: dict[str, Any] | None
    problem: str | None = None  # why the folder cannot be read at all
    error: str | None = None  # the first informative line of error.txt
    # split -> its predictions, or why they cannot be used (each file is read once)
    read_predictions: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Every leaf of the config (``{"model.lr": 0.05, ...}``)."""
        return flatten(self.config) if self.config is not None else {}

    def setting(self, key: str) -> Any:
        return self.settings.get(key)

    @property
    def seed(self) -> Any:
        """As written in the config (``settings`` compare 3 and 3.0 as one value)."""
        if self.config is None:
            return None
        try:
            return OmegaConf.select(self.config, "seed", throw_on_resolution_failure=False)
        except Exception:  # a hand-edited config.yaml
            return self.setting("seed")

    @property
    def dataset(self) -> str:
        return str(self.setting("dataset.name") or self.choice("dataset") or "?")

    @property
    def backbone(self) -> str:
        return str(self.setting("model.arch") or self.choice("model") or "?")

    @property
    def regularizer(self) -> str:
        return self.choice("regularizer") or "?"

    @property
    def method(self) -> str:
        """``ft``, ``ptr-sml1``, ``l2sp``, ... (the regression loss only where it matters)."""
        regression = (
            self.choice("regression") if self.regularizer in names.REGRESSION_METHODS else None
        )
        return names.method_name(self.regularizer, regression)

    @property
    def switch_rule(self) -> str | None:
        return self.setting("regularizer.switch")

    def choice(self, group: str) -> str | None:
        """The config-group option the run was composed with (``choices.<group>``); a run that
        failed before writing ``config.yaml`` has only Hydra's copy, whose ``choices`` are
        unresolved: then the option Hydra recorded in ``.hydra/hydra.yaml``."""
        value = self.setting(f"choices.{group}")
        if value is None or str(value).startswith("${"):
            value = self.hydra_choices.get(group)
        return str(value) if value is not None else None

    @cached_property
    def hydra_choices(self) -> dict[str, Any]:
        """The config-group options Hydra recorded in ``.hydra/hydra.yaml`` (read once)."""
        hydra_yaml = self.path / names.HYDRA_DIR / names.HYDRA_RECORD
        if not hydra_yaml.is_file():
            return {}
        try:
            choices = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.choices")
            return dict(choices) if choices is not None else {}
        except Exception:
            return {}

    def predictions(self, split: str) -> dict[str, np.ndarray]:
        """The run's predictions of ``split``; :class:`PredictionsError` naming the file."""
        if split not in self.read_predictions:
            try:
                self.read_predictions[split] = load_predictions(self.path, split)
            except PredictionsError as err:
                self.read_predictions[split] = err
        found = self.read_predictions[split]
        if isinstance(found, PredictionsError):
            raise found
        return found

    @cached_property
    def series(self) -> dict[str, Series]:
        """Every metric the run logged to its CSV files (a resumed run's earlier ones too)."""
        return read_series(self.path)

    def metric(self, key: str) -> tuple[float | None, str | None]:
        """The run's ``key`` of metrics.json in percent, or None and the reason it has none."""
        if self.problem:
            return None, self.problem
        if self.metrics is None:
            return None, self.error or "no metrics.json (failed, killed or still running)"
        value = self.metrics.get(key)
        if value is None:
            return None, f"metrics.json has no {key!r}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return None, f"{key} is {value!r}"
        return 100.0 * float(value), None

    def where(self) -> str:
        """``digits / resnet18 / ptr-sml1, seed 3``."""
        return f"{self.dataset} / {self.backbone} / {self.method}, seed {self.seed}"


def is_run_dir(path: Path) -> bool:
    """A run folder holds its resolved ``config.yaml`` or at least Hydra's ``.hydra/``."""
    return (path / names.CONFIG_FILE).is_file() or (path / names.HYDRA_DIR).is_dir()


def folder_problem(paths: Iterable[Path]) -> str | None:
    """What is wrong with ``paths`` as folders of runs, for the tools' one-line error."""
    paths = list(paths)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return f"no such folder: {', '.join(missing)}"
    files = [str(p) for p in paths if not p.is_dir()]
    if files:
        return f"not a folder: {', '.join(files)} (give the folders that hold the runs)"
    return None


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every run folder at or below ``roots``, without looking inside run folders."""
    found: dict[Path, Path] = {}
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            here = Path(dirpath)
            if is_run_dir(here):
                found.setdefault(here.resolve(), here)  # overlapping roots: count a run once
                dirnames.clear()
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
    return sorted(found.values(), key=lambda p: natural_key(str(p)))


def natural_key(text: str) -> list[Any]:
    """Sort ``.../2`` before ``.../10`` (Hydra numbers its jobs without padding)."""
    parts: list[Any] = []
    digits = ""
    for char in text + "\0":
        if char.isdigit():
            digits += char
            continue
        if digits:
            parts.append((0, int(digits), ""))
            digits = ""
        parts.append((1, 0, char))
    return parts


def first_error_line(path: Path) -> str | None:
    """The line of ``error.txt`` that says what went wrong (a traceback's last line)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line for line in lines if line]
    if not lines:
        return None
    # A traceback's first line says nothing; its last one names the exception.
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= MAX_ERROR_LINE else line[: MAX_ERROR_LINE - 3] + "..."


def load_run(path: Path) -> Run:
    """Read a run folder's config and, if the run finished, its ``metrics.json``."""
    error = first_error_line(path / names.ERROR_FILE)
    config_path = path / names.CONFIG_FILE
    if not config_path.is_file():
        config_path = path / names.HYDRA_DIR / names.CONFIG_FILE
    if not config_path.is_file():
        return Run(path, None, None, problem="no config.yaml", error=error)
    try:
        config = OmegaConf.load(config_path)
    except Exception as exc:  # a half-written or hand-edited file: list the run, don't crash
        return Run(path, None, None, problem=f"unreadable {config_path.name}: {exc}", error=error)
    if not isinstance(config, DictConfig):
        return Run(path, None, None, problem=f"{config_path.name} is not a mapping", error=error)
    metrics_path = path / names.METRICS_FILE
    if not metrics_path.is_file():
        return Run(path, config, None, error=error)
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        return Run(path, config, None, problem=f"unreadable metrics.json: {exc}", error=error)
    if not isinstance(metrics, dict):
        return Run(path, config, None, problem="metrics.json is not an object", error=error)
    return Run(path, config, metrics, error=error)


def load_runs(folders: Iterable[Path]) -> list[Run]:
    """Every run folder below ``folders``, read (unreadable ones included, with the reason)."""
    return [load_run(path) for path in find_run_dirs(folders)]


# --- groups of comparable runs ------------------------------------------------------------------


@dataclass
class Group:
    """Comparable runs (all compared settings equal); ``label`` and ``baseline`` are set by
    :func:`group_runs`."""

    settings: dict[str, Any]  # the compared settings the runs share
    runs: list[Run]
    label: str = ""
    baseline: Group | None = None
    no_baseline_because: str | None = None  # for a method without its ft group

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def backbone(self) -> str:
        return self.first.backbone

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def regularizer(self) -> str:
        return self.first.regularizer

    @property
    def row(self) -> tuple[str, str]:
        return self.dataset, self.backbone

    @property
    def seeds(self) -> list[Any]:
        return sorted((run.seed for run in self.runs), key=sort_value)

    def values(self, metric: str) -> list[float]:
        """``metric`` in percent, over the runs that have it."""
        return [v for v, _ in (run.metric(metric) for run in self.runs) if v is not None]

    def title(self, with_row: bool = True) -> str:
        """``digits / resnet18 / ptr-sml1 R=3,m=1`` (the label alone without ``with_row``)."""
        return f"{self.dataset} / {self.backbone} / {self.label}" if with_row else self.label

    @property
    def hparams(self) -> dict[str, Any]:
        """The regularizer's settings (``R``, ``m``, ``alpha``, ...), by their short name."""
        prefix = "regularizer."
        return {
            key[len(prefix) :]: value
            for key, value in self.settings.items()
            if key.startswith(prefix) and key != "regularizer._target_"
        }

    @property
    def switch_epochs(self) -> list[int | None] | None:
        """When each run's pseudo-task switched on, for methods that have one (PtR, FNP)."""
        metrics = [run.metrics or {} for run in self.runs]
        if not any(m.get("pseudo_task") for m in metrics):
            return None
        return [m.get("ptr_switch_epoch") for m in metrics]

    @property
    def switched_on(self) -> tuple[int, int] | None:
        """(runs whose pseudo-task switched on, runs); None for a method without one."""
        epochs = self.switch_epochs
        return None if epochs is None else (sum(e is not None for e in epochs), len(epochs))

    @property
    def never_switched_on(self) -> bool:
        counts = self.switched_on
        return counts is not None and counts[0] == 0


def compared_settings(run: Run) -> tuple[tuple[str, Any], ...]:
    """What identifies a run's group: its compared settings, sorted; the method by name too
    (so runs of unreadable config content but known options still separate by method)."""
    kept = sorted((key, value) for key, value in run.settings.items() if is_compared(key))
    return (("method", run.method), *kept)


def group_runs(runs: Iterable[Run]) -> list[Group]:
    """The comparable runs of ``runs`` (those with a config) as groups, labelled, each with its
    baseline; sorted by data set, backbone, then ``ft`` first, then method and label."""
    by_key: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.config is not None:
            by_key[compared_settings(run)].append(run)
    groups = [Group(dict(key[1:]), members) for key, members in by_key.items()]
    label_groups(groups)
    for group in groups:
        group.baseline, group.no_baseline_because = find_baseline(group, groups)
    groups.sort(key=group_order)
    return groups


def group_order(group: Group) -> tuple[Any, ...]:
    values = tuple(sort_value(v) for v in group.settings.values())
    return (group.dataset, group.backbone, group.method != BASELINE, group.method, values)


def label_groups(groups: Sequence[Group]) -> None:
    """Set each group's label: its method and the settings that vary between the groups of its
    data set and backbone. A method's own keys count only where they vary within the method
    (``regularizer.loss`` is already in ``ptr-l2``); R and m are shown together."""
    rows: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for group in groups:
        rows[group.row].append(group)
    for members in rows.values():
        common = varying(members, lambda key: not is_method(key) and key not in ROW_KEYS)
        methods: dict[str, list[Group]] = defaultdict(list)
        for group in members:
            methods[group.method].append(group)
        for same in methods.values():
            shown = common | varying(same, is_method)
            for group in same:
                keys = [k for k in sorted(shown, key=axes_first) if k in group.settings]
                if any(k in keys for k in PTR_AXES):
                    keys = [*PTR_AXES, *(k for k in keys if k not in PTR_AXES)]
                group.label = " ".join([group.method, describe(group.settings, keys)]).strip()


def varying(groups: Sequence[Group], which: Callable[[str], bool]) -> set[str]:
    """The keys (of those ``which`` accepts) that hold more than one value among the groups
    that have them."""
    values: dict[str, set[Any]] = defaultdict(set)
    for group in groups:
        for key, value in group.settings.items():
            if which(key):
                values[key].add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def axes_first(key: str) -> tuple[int, str]:
    return (PTR_AXES.index(key), "") if key in PTR_AXES else (len(PTR_AXES), key)


def describe(settings: dict[str, Any], keys: Sequence[str]) -> str:
    """``R=3,m=1,max_epochs=6``: each key by its last part (in full where two end alike)."""
    return ",".join(
        f"{shown}={format_value(settings.get(key))}"
        for key, shown in zip(keys, short_keys(keys), strict=True)
    )


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def find_baseline(group: Group, groups: Sequence[Group]) -> tuple[Group | None, str | None]:
    """The ``ft`` group whose settings equal ``group``'s outside the method, and else why none
    (naming the settings in which the row's ft groups differ)."""
    if group.method == BASELINE:
        return None, None
    own = outside_method(group.settings)
    candidates = [g for g in groups if g.method == BASELINE and g.row == group.row]
    for candidate in candidates:
        if outside_method(candidate.settings) == own:
            return candidate, None
    if not candidates:
        return None, f"no {BASELINE} run of {group.dataset} / {group.backbone}"
    differing = sorted(
        {
            key
            for candidate in candidates
            for key in own.keys() | outside_method(candidate.settings).keys()
            if own.get(key) != outside_method(candidate.settings).get(key)
        }
    )
    return None, (
        f"no {BASELINE} run with the same settings: the {BASELINE} runs of {group.dataset} / "
        f"{group.backbone} differ in {', '.join(differing)}"
    )


def outside_method(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if not is_method(key)}


# --- numbers ------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def sort_value(value: Any) -> tuple[int, float, str]:
    """Numbers numerically, anything else after them by its text (seeds, R and m)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
