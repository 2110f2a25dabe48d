"""Aggregate finished runs into the paper's Table 1: mean (std), gain and error-rate reduction.

    ptr-report <folder> [<folder> ...] [--metric test/acc] [--out DIR] [--plots]
    (or python -m ptr_lightning.results.report ...)

Every run folder below the given folders (one holding ``config.yaml``, or ``.hydra/``) is read
and the comparable runs are grouped (:mod:`ptr_lightning.results.runs`: every setting but the
seed equal); each group's metric is summarised in percent. A group's baseline is the fine-tuning
(``ft``) group with the same settings outside the method, as in the paper:
gain = mean(method) - mean(baseline) in points, error-rate reduction = gain / (100 - baseline).
Runs without the metric are listed, never dropped silently. Prints a Markdown table and writes
``report.md`` and ``report.csv`` into ``--out`` (default: the first folder).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import writable
from ptr_lightning.core.switch_rules import never_switched_on
from ptr_lightning.results.runs import (
    BASELINE,
    Group,
    Run,
    folder_problem,
    format_value,
    group_runs,
    load_runs,
    mean_std,
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


@dataclass
class Summary:
    """One line of the table: a group's metric (percent, one value per run) and its gain."""

    group: Group
    values: list[float]
    mean: float
    std: float
    baseline_mean: float | None = None
    gain: float | None = None
    error_rate_reduction: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Group | None:
        return self.group.baseline


def summarize(groups: Sequence[Group], metric: str) -> list[Summary]:
    """Mean (std) of ``metric`` per group, and the gain over its baseline group."""
    summaries = {}
    for group in groups:
        values = group.values(metric)  # every run has it: the report groups finished runs
        mean, std = mean_std(values)
        summaries[id(group)] = Summary(group, values, mean, std, notes=group_notes(group))
    for summary in summaries.values():
        baseline = summary.baseline
        if baseline is None:
            continue
        reference = summary.baseline_mean = summaries[id(baseline)].mean
        summary.gain = summary.mean - reference
        if 100.0 - reference > 0:
            summary.error_rate_reduction = 100.0 * summary.gain / (100.0 - reference)
    return list(summaries.values())


def group_notes(group: Group) -> list[str]:
    """Repeated seeds, a pseudo-task that never switched on, a missing baseline."""
    notes = []
    seeds = [run.seed for run in group.runs]
    repeated = sorted({str(s) for s in seeds if seeds.count(s) > 1})
    if repeated:
        notes.append(f"seed {', '.join(repeated)} repeated (overlapping folders?)")
    if group.never_switched_on:
        cause = never_switched_on(group.first.switch_rule, " in any run")
        notes.append(f"{cause}: these runs are plain fine-tuning")
    elif group.switched_on is not None and group.switched_on[0] < group.switched_on[1]:
        on, runs = group.switched_on
        notes.append(f"the pseudo-task never switched on in {runs - on} of {runs} runs")
    if group.no_baseline_because:
        notes.append(f"no gain: {group.no_baseline_because}")
    return notes


# --- output -------------------------------------------------------------------------------------


def switch_cell(group: Group) -> str:
    """``3/3 from ep 11``, ``2/3 from ep 10-12``, ``never (0/3)``; blank without a pseudo-task."""
    epochs = group.switch_epochs
    if epochs is None:
        return ""
    on = sorted(e for e in epochs if e is not None)
    if not on:
        return f"never (0/{len(epochs)})"
    span = f"{on[0]}" if on[0] == on[-1] else f"{on[0]}-{on[-1]}"
    return f"{len(on)}/{len(epochs)} from ep {span}"


def on_runs(group: Group) -> str:
    """The CSV's ``pseudo_task_on_runs``: ``2/3``, ``never``; blank without a pseudo-task."""
    if group.switched_on is None:
        return ""
    on, runs = group.switched_on
    return "never" if on == 0 else f"{on}/{runs}"


def table_row(summary: Summary, with_switch: bool) -> list[str]:
    group, err = summary.group, summary.error_rate_reduction
    return [
        group.dataset,
        group.backbone,
        group.label,
        str(len(summary.values)),
        f"{summary.mean:.2f} ({summary.std:.2f})",
        "" if summary.gain is None else f"{summary.gain:+.2f}",
        f"{err:.2f}%" if err is not None else "",
        *([switch_cell(group)] if with_switch else []),
        ",".join(str(s) for s in group.seeds),
    ]


def failed_line(run: Run, reason: str) -> str:
    """``- `path` (digits / resnet18 / ptr-sml1, seed 3): reason``."""
    where = f" ({run.where()})" if run.config is not None else ""
    return f"- `{run.path}`{where}: {reason}"


def render_markdown(
    summaries: Sequence[Summary], failed: Sequence[tuple[Run, str]], metric: str
) -> str:
    """The report: table, counts, notes, and the runs that could not be aggregated."""
    with_switch = any(s.group.switch_epochs is not None for s in summaries)
    columns = [*COLUMNS[:-1], SWITCH_COLUMN, COLUMNS[-1]] if with_switch else COLUMNS
    lines = [f"# {metric} (%): mean (std) over runs", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(table_row(s, with_switch)) + " |" for s in summaries]
    n_runs = sum(len(s.values) for s in summaries)
    lines += [
        "",
        f"gain: points over `{BASELINE}` (fine-tuning) with the same settings outside the "
        "method; error-rate reduction = gain / (100 - baseline). Runs are averaged only when "
        "every setting but the seed is equal.",
        f"{n_runs} runs aggregated in {len(summaries)} groups; {len(failed)} failed or unfinished.",
    ]
    notes = [f"- {s.group.title()}: {note}" for s in summaries for note in s.notes]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
    lines += [failed_line(run, reason) for run, reason in failed] or ["- none"]
    return "\n".join(lines) + "\n"


def render_csv(summaries: Sequence[Summary], metric: str) -> str:
    """One line per group, full precision; blank where a value does not apply."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in summaries:
        group, baseline = s.group, s.baseline
        writer.writerow(
            [
                group.dataset,
                group.backbone,
                group.label,
                group.regularizer,
                group.method.partition("-")[2],
                ",".join(f"{k}={format_value(v)}" for k, v in sorted(group.hparams.items())),
                metric,
                len(s.values),
                repr(s.mean),
                repr(s.std),
                "" if s.gain is None else repr(s.gain),
                "" if s.error_rate_reduction is None else repr(s.error_rate_reduction),
                baseline.label if baseline else "",
                "" if s.baseline_mean is None else repr(s.baseline_mean),
                on_runs(group),
                " ".join("-" if e is None else str(e) for e in group.switch_epochs or []),
                " ".join(str(seed) for seed in group.seeds),
                " ".join(str(run.path) for run in group.runs),
            ]
        )
    return buffer.getvalue()


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ptr-report",
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
        "--plots", action="store_true", help="also write the figures of ptr-plots into <out>/plots"
    )
    return parser.parse_args(argv)


def split_by_metric(runs: Sequence[Run], metric: str) -> tuple[list[Run], list[tuple[Run, str]]]:
    """The runs that have ``metric``, and the others with the reason."""
    finished, failed = [], []
    for run in runs:
        value, reason = run.metric(metric)
        if value is None:
            failed.append((run, reason or "unknown"))
        else:
            finished.append(run)
    return finished, failed


def unknown_metric(runs: Sequence[Run], metric: str) -> str | None:
    """Why ``metric`` is no metric of any finished run (naming the ones they have), or None."""
    known = sorted({key for run in runs for key in (run.metrics or {}) if "/" in key})
    if not known or metric in known:
        return None
    return f"no run has the metric {metric!r}; the runs' metrics.json have {', '.join(known)}"


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns 0 when at least one run was aggregated, else 1."""
    args = parse_args(argv)
    problem = folder_problem(args.folders)
    if problem:
        print(f"report: {problem}", file=sys.stderr)
        return 1
    runs = load_runs(args.folders)
    if not runs:
        where = ", ".join(map(str, args.folders))
        print(f"report: no run folder (with config.yaml or .hydra/) below {where}", file=sys.stderr)
        return 1
    finished, failed = split_by_metric(runs, args.metric)
    unknown = unknown_metric(runs, args.metric) if not finished else None
    if unknown:
        print(f"report: {unknown}", file=sys.stderr)
        return 1
    summaries = summarize(group_runs(finished), args.metric)
    markdown = render_markdown(summaries, failed, args.metric)
    out = args.out or args.folders[0]
    problem = writable(out)
    if problem:
        print(
            f"report: cannot write into {out} ({problem}); give --out another folder",
            file=sys.stderr,
        )
        return 1
    # Written before printing: a reader that stops early (| head) loses nothing.
    (out / names.REPORT_MD).write_text(markdown)
    (out / names.REPORT_CSV).write_text(render_csv(summaries, args.metric))
    print(markdown, end="")
    print(f"\nwrote {out / names.REPORT_MD} and {out / names.REPORT_CSV}")
    if args.plots:
        from ptr_lightning.results.plots import print_written, write_all

        print_written(write_all(args.folders, out / names.PLOTS_DIR, metric=args.metric, runs=runs))
    if not finished:
        print(f"report: none of the {len(runs)} run folders has {args.metric!r}", file=sys.stderr)
        return 1
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """``main``, quiet when the reader of its output goes away (``ptr-report ... | head``)."""
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
