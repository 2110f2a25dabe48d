"""What the command line runs for each job: ``train(cfg)``, its error kept in the run folder, and
the value it returns to a sweeper."""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import write_atomic
from ptr_lightning.core.errors import USER_ERRORS, Interrupted
from ptr_lightning.core.switch_rules import never_switched_on
from ptr_lightning.run.train import train

log = logging.getLogger(__name__)


def run_job(
    cfg: DictConfig, overrides: Sequence[str] = (), *, multirun: bool = False
) -> float | None:
    """``train(cfg)`` for the CLI, its error kept in the run folder.

    A failing job writes ``error.txt`` (the traceback) to its folder. An error whose message
    says what to do (a bad setting, a missing data set, ...) prints as those few lines; its
    traceback is in ``error.txt`` (``HYDRA_FULL_ERROR=1`` prints it too). In a multirun the
    sweep goes on with the other jobs (the job returns no value to a sweeper, and the report
    lists it); a single run exits with status 1. SIGTERM and SIGINT end the process with status
    143 and 130, leaving ``error.txt`` with the resume command.
    """
    out = Path(cfg.paths.output_dir)
    try:
        metrics = train(cfg, overrides)
        return objective(cfg, metrics) if multirun else None
    except Interrupted as stop:
        write_atomic(out / names.ERROR_FILE, f"{stop}\n")
        log.warning("%s", stop)
        raise SystemExit(128 + stop.signum) from None
    except Exception as err:
        write_atomic(out / names.ERROR_FILE, traceback.format_exc())
        if multirun:
            log.error("job failed: %s\n(its traceback is in %s; the sweep goes on)", err, out)
            return None
        if not isinstance(err, USER_ERRORS) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            f"{type(err).__name__}: {err}\n(traceback in {out / names.ERROR_FILE}; "
            "HYDRA_FULL_ERROR=1 prints it here)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper optimizes (``cfg.optimized_metric``); None if there is none.

    A run of a gated regularizer (PtR, FNP) whose pseudo-task never switched on was plain
    fine-tuning: it says nothing about R or m, so it returns None, which the Optuna sweeper
    records as a failed trial instead of ranking it (NaN would stop the whole search: the
    sweeper re-reports a NaN trial with its value and Optuna refuses that).
    """
    key = cfg.get("optimized_metric")
    if not key:
        return None
    if metrics.get("pseudo_task") and metrics.get("ptr_switch_epoch") is None:
        log.warning(
            "%s: this run was plain fine-tuning, so it returns no value: the sweeper records a "
            "failed trial",
            never_switched_on(cfg.regularizer.get("switch")),
        )
        return None
    value = metrics.get(key)
    finite = isinstance(value, int | float) and math.isfinite(value)
    return float(value) if finite else None
