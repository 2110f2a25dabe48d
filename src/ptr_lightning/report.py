"""Aggregate finished runs into the paper's Table 1: mean (std), gain and error-rate reduction.

``python -m ptr_lightning.report <folder> [<folder> ...] [--metric test/acc] [--out DIR] [--plots]``

Every run folder below the given folders (one holding ``config.yaml``, or ``.hydra/``) is read;
runs are grouped by (data set, backbone) and method, and each group's metric is summarised in
percent. The baseline of a row is its ``ft`` method (plain fine-tuning), as in the paper:
gain = mean(method) - mean(baseline) in points, error-rate reduction = gain / (100 - baseline).
Runs without the metric are listed, never dropped silently. Prints a Markdown table and writes
``report.md`` and ``report.csv`` into ``--out`` (default: the first folder).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ptr_lightning import names
from ptr_lightning.resume import DATASET_PLUMBING

# Folders a run writes below itself that never hold other runs.
SKIP_DIRS = frozenset({"wandb", "csv", "checkpoints", ".hydra"})

BASELINE = names.FINE_TUNING

# Regularizer keys that are not hyperparameters of the method (`loss` is in the label).
NOT_HPARAMS = frozenset({"_target_", "seed", "loss"})

# Config keys that may differ between runs of one group without changing the experiment:
# plumbing (paths, loggers, workers, devices) or values already in the group's label.
IGNORED_PREFIXES = (
    "seed",
    "paths.",
    "logger.",
    "choices.",
    "run.",
    "hydra.",
    "regularizer.",
    "regression.",
    "model.ptr.",
    "optimized_metric",
    "telemetry.",
    *DATASET_PLUMBING,
    "trainer.accelerator",
    "trainer.devices",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)

COLUMNS = [
    "dataset",
    "backbone",
    "method",
    "n",
    "acc mean (std)",
    "gain",
    "error-rate reduction",
    "seeds",
]
SWITCH_COLUMN = "pseudo-task on"  # shown when a group has one (PtR, FNP)

CSV_COLUMNS = [
    "dataset",
    "backbone",
    "method",
    "regularizer",
    "regression",
    "weight_decay_off",
    "hparams",
    "metric",
    "n",
    "mean_pct",
    "std_pct",
    "gain_pp",
    "error_rate_reduction_pct",
    "baseline",
    "baseline_mean_pct",
    "pseudo_task_on_runs",
    "switch_epochs",
    "seeds",
    "runs",
]


@dataclass(frozen=True)
class Run:
    """One run folder as found on disk; ``config``/``metrics`` are None when unreadable."""

    path: Path
    config: DictConfig | None
    metrics: dict[str, Any] | None
    problem: str | None = None  # why the folder cannot be read at all
    error: str | None = None  # the first informative line of error.txt


@dataclass(frozen=True)
class Setting:
    """What identifies a run's table cell, apart from its seed."""

    dataset: str
    backbone: str
    regularizer: str
    regression: str | None
    weight_decay_off: bool
    hparams: tuple[tuple[str, Any], ...]

    @property
    def method(self) -> str:
        """The method's name without hyperparameters, e.g. ``ft`` or ``ptr-sml1``."""
        return names.method_name(self.regularizer, self.regression)


@dataclass
class Summary:
    """One line of the table: a (row, method) group's statistics and its gain."""

    setting: Setting
    label: str
    values: list[float]  # the metric of each run, in percent
    seeds: list[Any]
    paths: list[Path]
    mean: float
    std: float
    gain: float | None = None
    error_rate_reduction: float | None = None
    baseline: Summary | None = None
    notes: list[str] = field(default_factory=list)
    # For PtR and FNP: the epoch each run's pseudo-task switched on (None: never); else None.
    switch_epochs: list[int | None] | None = None

    @property
    def never_switched_on(self) -> bool:
        return self.switch_epochs is not None and all(e is None for e in self.switch_epochs)


# --- finding and reading runs ---------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """A run folder holds its resolved ``config.yaml`` or at least Hydra's ``.hydra/``."""
    return (path / names.CONFIG_FILE).is_file() or (path / ".hydra").is_dir()


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
    return line if len(line) <= 200 else line[:197] + "..."


def load_run(path: Path) -> Run:
    """Read a run folder's config and, if the run finished, its ``metrics.json``."""
    error = first_error_line(path / names.ERROR_FILE)
    config_path = path / names.CONFIG_FILE
    if not config_path.is_file():
        config_path = path / ".hydra" / names.CONFIG_FILE
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


def metric_value(run: Run, metric: str) -> tuple[float | None, str | None]:
    """The run's metric in percent, or None and the reason it has none."""
    if run.problem:
        return None, run.problem
    if run.metrics is None:
        return None, run.error or "no metrics.json (failed, killed or still running)"
    value = run.metrics.get(metric)
    if value is None:
        return None, f"metrics.json has no {metric!r}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"{metric} is {value!r}"
    return 100.0 * float(value), None


# --- what a run is ----------------------------------------------------------------------------


def select(config: DictConfig, key: str) -> Any:
    """``config[key]`` or None; never raises (``.hydra/config.yaml`` keeps ``${hydra:...}``)."""
    try:
        return OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    except Exception:
        return None


def hydra_choice(path: Path, group: str) -> str | None:
    """The option of ``group`` that Hydra recorded in ``.hydra/hydra.yaml``: a run that failed
    before writing ``config.yaml`` has only Hydra's copy, whose ``choices`` are unresolved."""
    hydra_yaml = path / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return None
    try:
        value = select(OmegaConf.load(hydra_yaml), f"hydra.runtime.choices.{group}")
    except Exception:
        return None
    return str(value) if value is not None else None


def choice(run: Run, group: str) -> str | None:
    """The config-group option the run was composed with (``choices.<group>``)."""
    assert run.config is not None
    value = select(run.config, f"choices.{group}") or hydra_choice(run.path, group)
    return str(value) if value is not None else None


def normalise(value: Any) -> Any:
    """A hashable value that compares 3 and 3.0 equal (Optuna writes floats, configs ints)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def regularizer_hparams(config: DictConfig) -> tuple[tuple[str, Any], ...]:
    """The regularizer's scalar hyperparameters (R, m, T, alpha, ...), sorted by name."""
    node = select(config, "regularizer")
    if not isinstance(node, DictConfig):
        return ()
    hparams = []
    for key in node:
        if key in NOT_HPARAMS:
            continue
        value = select(node, str(key))
        if value is None or isinstance(value, bool | int | float | str):
            hparams.append((str(key), normalise(value)))
    return tuple(sorted(hparams))


def describe(run: Run) -> Setting:
    """The run's data set, backbone, method and hyperparameters (its config must be read)."""
    assert run.config is not None
    config = run.config
    regularizer = choice(run, "regularizer") or "?"
    weight_decay = select(config, "model.weight_decay")
    return Setting(
        dataset=str(select(config, "dataset.name") or select(config, "choices.dataset") or "?"),
        backbone=str(select(config, "model.arch") or select(config, "choices.model") or "?"),
        regularizer=regularizer,
        regression=choice(run, "regression") if regularizer in names.REGRESSION_METHODS else None,
        weight_decay_off=isinstance(weight_decay, int | float) and float(weight_decay) == 0.0,
        hparams=regularizer_hparams(config),
    )


# --- grouping and statistics -----------------------------------------------------------------


def format_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def hparam_label(hparams: tuple[tuple[str, Any], ...], varying: set[str]) -> str:
    """``R=3,m=1``: R and m always (the paper's sweep), other keys only where they vary."""
    shown = [(k, v) for k, v in hparams if k in ("R", "m")]
    shown += [(k, v) for k, v in hparams if k in varying and k not in ("R", "m")]
    return ",".join(f"{k}={format_number(v)}" for k, v in shown)


def method_label(setting: Setting, hp: str = "") -> str:
    """E.g. ``ptr-sml1``, ``ptr-l2 R=5,m=10``, ``none w/o WD``."""
    parts = [setting.method] + ([hp] if hp else [])
    if setting.weight_decay_off:
        parts.append("w/o WD")
    return " ".join(parts)


def label_settings(settings: Iterable[Setting]) -> dict[Setting, str]:
    """A method label per setting; hyperparameters appear only where a method was swept."""
    by_method: dict[tuple[Any, ...], list[Setting]] = defaultdict(list)
    for s in set(settings):
        by_method[(s.dataset, s.backbone, s.method, s.weight_decay_off)].append(s)
    labels: dict[Setting, str] = {}
    for group in by_method.values():
        if len(group) == 1:
            labels[group[0]] = method_label(group[0])
            continue
        keys = {k for s in group for k, _ in s.hparams}
        varying = {k for k in keys if len({dict(s.hparams).get(k) for s in group}) > 1}
        for s in group:
            labels[s] = method_label(s, hparam_label(s.hparams, varying))
    return labels


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def flatten(config: DictConfig) -> dict[str, Any]:
    """``{"model.lr": 0.05, ...}`` for comparing configs; values as written in the file."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = normalise(node) if not isinstance(node, list) else str(node)

    walk(OmegaConf.to_container(config, resolve=False), "")
    return out


def config_differences(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """Config keys (besides seeds and plumbing) whose values differ among ``runs``."""
    flats = [flatten(run.config) for run in runs if run.config is not None]
    keys = sorted({k for flat in flats for k in flat if not k.startswith(IGNORED_PREFIXES)})
    differing = {}
    for key in keys:
        values = {flat.get(key, "<absent>") for flat in flats}
        if len(values) > 1:
            differing[key] = sorted(values, key=str)
    return differing


def group_notes(runs: Sequence[Run], seeds: Sequence[Any]) -> list[str]:
    """Warnings for a group: repeated seeds, or runs averaged despite differing configs."""
    notes = []
    repeated = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
    if repeated:
        notes.append(f"seed {', '.join(map(str, repeated))} repeated (overlapping folders?)")
    for key, values in config_differences(runs).items():
        notes.append(f"averaged over differing {key}: {', '.join(map(format_number, values))}")
    return notes


def switch_epochs(runs: Sequence[Run]) -> list[int | None] | None:
    """When each run's pseudo-task switched on, for methods that have one (PtR, FNP)."""
    metrics = [run.metrics or {} for run in runs]
    if not any(m.get("pseudo_task") for m in metrics):
        return None
    return [m.get("ptr_switch_epoch") for m in metrics]


def switch_notes(epochs: list[int | None] | None) -> list[str]:
    if epochs is None or all(e is not None for e in epochs):
        return []
    off = sum(e is None for e in epochs)
    if off == len(epochs):
        return [
            "the pseudo-task never switched on in any run (latch, epoch: the epoch-mean CE "
            "stayed >= regularizer.T; lr_drop: the rate never dropped): these runs are plain "
            "fine-tuning"
        ]
    return [f"the pseudo-task never switched on in {off} of {len(epochs)} runs"]


def summarize(runs: Sequence[tuple[Run, float]]) -> list[Summary]:
    """One ``Summary`` per (data set, backbone, method), with gains over the baseline."""
    settings = {id(run): describe(run) for run, _ in runs}
    labels = label_settings(settings.values())
    grouped: dict[Setting, list[tuple[Run, float]]] = defaultdict(list)
    for run, value in runs:
        grouped[settings[id(run)]].append((run, value))
    summaries = []
    for setting, members in grouped.items():
        values = [value for _, value in members]
        seeds = [select(run.config, "seed") for run, _ in members if run.config is not None]
        mean, std = mean_std(values)
        epochs = switch_epochs([run for run, _ in members])
        summaries.append(
            Summary(
                setting=setting,
                label=labels[setting],
                values=values,
                seeds=sorted(seeds, key=seed_key),
                paths=[run.path for run, _ in members],
                mean=mean,
                std=std,
                notes=switch_notes(epochs) + group_notes([run for run, _ in members], seeds),
                switch_epochs=epochs,
            )
        )
    summaries.sort(key=sort_key)
    add_gains(summaries)
    return summaries


def seed_key(seed: Any) -> tuple[int, float, str]:
    """Numbers numerically, anything else after them by its text (seeds, R and m)."""
    if isinstance(seed, int | float) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def sort_key(summary: Summary) -> tuple[Any, ...]:
    """Rows alphabetically; the baseline first in its row, then methods, then their sweeps."""
    s = summary.setting
    hparams = tuple((key, seed_key(value)) for key, value in s.hparams)
    return (s.dataset, s.backbone, s.method != BASELINE, s.method, s.weight_decay_off, hparams)


def baseline_setting(setting: Setting, candidates: Iterable[Setting]) -> Setting | None:
    """The first of ``candidates`` that is ``setting``'s baseline: ``ft`` of the same data set
    and backbone, with the same weight-decay setting when there is one."""
    row = [
        other
        for other in candidates
        if other.method == BASELINE
        and (other.dataset, other.backbone) == (setting.dataset, setting.backbone)
    ]
    same_wd = [other for other in row if other.weight_decay_off == setting.weight_decay_off]
    chosen = same_wd or row
    return chosen[0] if chosen else None


def find_baseline(summary: Summary, summaries: Sequence[Summary]) -> Summary | None:
    """The summary of the row's ``ft`` (see :func:`baseline_setting`)."""
    by_setting = {other.setting: other for other in summaries}
    chosen = baseline_setting(summary.setting, by_setting)
    return by_setting[chosen] if chosen is not None else None


def add_gains(summaries: Sequence[Summary]) -> None:
    """Gain in points over the baseline and error-rate reduction, in percent, in place."""
    for summary in summaries:
        baseline = find_baseline(summary, summaries)
        if baseline is None or baseline is summary:
            continue
        summary.baseline = baseline
        summary.gain = summary.mean - baseline.mean
        remaining_error = 100.0 - baseline.mean
        if remaining_error > 0:
            summary.error_rate_reduction = 100.0 * summary.gain / remaining_error


# --- output ----------------------------------------------------------------------------------


def format_seeds(seeds: Sequence[Any]) -> str:
    return ",".join(str(s) for s in seeds)


def gain_cell(summary: Summary) -> str:
    if summary.gain is None:
        return ""
    text = f"{summary.gain:+.2f}"
    assert summary.baseline is not None
    if summary.baseline.setting.weight_decay_off != summary.setting.weight_decay_off:
        text += f" (vs {summary.baseline.label})"  # no baseline with the same weight decay
    return text


def switch_cell(summary: Summary) -> str:
    """``3/3 from ep 11``, ``2/3 from ep 10-12``, ``never (0/3)``; blank without a pseudo-task."""
    epochs = summary.switch_epochs
    if epochs is None:
        return ""
    on = sorted(e for e in epochs if e is not None)
    if not on:
        return f"never (0/{len(epochs)})"
    span = f"{on[0]}" if on[0] == on[-1] else f"{on[0]}-{on[-1]}"
    return f"{len(on)}/{len(epochs)} from ep {span}"


def table_row(summary: Summary, with_switch: bool) -> list[str]:
    s = summary.setting
    err = summary.error_rate_reduction
    return [
        s.dataset,
        s.backbone,
        summary.label,
        str(len(summary.values)),
        f"{summary.mean:.2f} ({summary.std:.2f})",
        gain_cell(summary),
        f"{err:.2f}%" if err is not None else "",
        *([switch_cell(summary)] if with_switch else []),
        format_seeds(summary.seeds),
    ]


def failed_line(run: Run, reason: str) -> str:
    """``- path (digits / resnet18 / ptr-sml1, seed 3): reason``."""
    where = ""
    if run.config is not None:
        setting = describe(run)
        seed = select(run.config, "seed")
        where = f" ({setting.dataset} / {setting.backbone} / {method_label(setting)}, seed {seed})"
    return f"- `{run.path}`{where}: {reason}"


def render_markdown(
    summaries: Sequence[Summary], failed: Sequence[tuple[Run, str]], metric: str
) -> str:
    """The report: table, counts, notes, and the runs that could not be aggregated."""
    lines = [f"# {metric} (%): mean (std) over runs", ""]
    with_switch = any(s.switch_epochs is not None for s in summaries)
    columns = [*COLUMNS[:-1], SWITCH_COLUMN, COLUMNS[-1]] if with_switch else COLUMNS
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(table_row(s, with_switch)) + " |" for s in summaries]
    n_runs = sum(len(s.values) for s in summaries)
    lines += [
        "",
        f"gain: points over `{BASELINE}` (fine-tuning) of the same dataset and backbone; "
        "error-rate reduction = gain / (100 - baseline).",
        f"{n_runs} runs aggregated in {len(summaries)} groups; {len(failed)} failed or unfinished.",
    ]
    notes = [
        f"- {s.setting.dataset} / {s.setting.backbone} / {s.label}: {note}"
        for s in summaries
        for note in s.notes
    ]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
    lines += [failed_line(run, reason) for run, reason in failed] or ["- none"]
    return "\n".join(lines) + "\n"


def render_csv(summaries: Sequence[Summary], metric: str) -> str:
    """One line per (row, method), full precision; blank where a value does not apply."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in summaries:
        setting = s.setting
        writer.writerow(
            [
                setting.dataset,
                setting.backbone,
                s.label,
                setting.regularizer,
                setting.regression or "",
                setting.weight_decay_off,
                ",".join(f"{k}={format_number(v)}" for k, v in setting.hparams),
                metric,
                len(s.values),
                repr(s.mean),
                repr(s.std),
                "" if s.gain is None else repr(s.gain),
                "" if s.error_rate_reduction is None else repr(s.error_rate_reduction),
                s.baseline.label if s.baseline else "",
                repr(s.baseline.mean) if s.baseline else "",
                switch_cell(s).split(" ")[0] if s.switch_epochs is not None else "",
                " ".join("-" if e is None else str(e) for e in s.switch_epochs or []),
                " ".join(str(seed) for seed in s.seeds),
                " ".join(str(path) for path in s.paths),
            ]
        )
    return buffer.getvalue()


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ptr_lightning.report",
        description="Aggregate run folders into mean (std), gain and error-rate reduction.",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run, sweep or outputs folders")
    parser.add_argument(
        "--metric",
        default=names.TEST_ACC,
        help="key of metrics.json to report (default test/acc; the paper's Flower102, MIT67 "
        "and Caltech tables use test/mean_class_acc)",
    )
    parser.add_argument(
        "--out", type=Path, help="where report.md and report.csv go (default: first folder)"
    )
    parser.add_argument(
        "--plots",
        action="store_true",
        help="also write the figures of python -m ptr_lightning.plots into <out>/plots",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns 0 when at least one run was aggregated, else 1."""
    args = parse_args(argv)
    missing = [folder for folder in args.folders if not folder.is_dir()]
    if missing:
        print(f"report: no such folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    run_dirs = find_run_dirs(args.folders)
    if not run_dirs:
        print(
            "report: no run folder (with config.yaml or .hydra/) below "
            + ", ".join(map(str, args.folders)),
            file=sys.stderr,
        )
        return 1
    finished: list[tuple[Run, float]] = []
    failed: list[tuple[Run, str]] = []
    for path in run_dirs:
        run = load_run(path)
        value, reason = metric_value(run, args.metric)
        if value is None:
            failed.append((run, reason or "unknown"))
        else:
            finished.append((run, value))
    summaries = summarize(finished)
    markdown = render_markdown(summaries, failed, args.metric)
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    # Written before printing: a reader that stops early (| head) loses nothing.
    (out / names.REPORT_MD).write_text(markdown)
    (out / names.REPORT_CSV).write_text(render_csv(summaries, args.metric))
    print(markdown, end="")
    print(f"\nwrote {out / names.REPORT_MD} and {out / names.REPORT_CSV}")
    if args.plots:
        from ptr_lightning.plots import print_written, write_all

        print_written(write_all(args.folders, out / "plots", metric=args.metric))
    if not finished:
        print(
            f"report: none of the {len(run_dirs)} run folders has {args.metric!r}",
            file=sys.stderr,
        )
        return 1
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """``main``, quiet when the reader of its output goes away (``report ... | head``)."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the interpreter's final flush is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(run())
