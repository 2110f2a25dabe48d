"""A single run's command, checked before Hydra writes anything: a refused command leaves no
folder and no file; and a multirun that had failed jobs ends with a non-zero status.

Hydra makes the run folder and writes ``.hydra/`` and a log before the job starts. This Hydra
callback (``hydra.callbacks.preflight`` in ``conf/config.yaml``) runs before that, on the
composed config as the job will see it, what the job runs first (:func:`run.train.prepare`):
a bad setting, a resume of what cannot be resumed, a folder that holds another run or a live
one, a GPU setting without a GPU are refused in a few lines.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ptr_lightning.core import names
from ptr_lightning.core.errors import USER_ERRORS
from ptr_lightning.core.settings import SEED_RULE
from ptr_lightning.run.instantiate import instantiate


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return  # debugging: the job itself meets the mistake and raises with its traceback
        try:
            with job_config(config) as (task, overrides):
                # The seed and the regularizer's settings first, resolving only their keys: they
                # need torch, not torchvision (model.input's resolver) or Lightning.
                SEED_RULE.check(task.seed)
                instantiate(resolved(task.regularizer), "regularizer")
                from ptr_lightning.run.train import prepare

                prepare(resolved(task), overrides)
        except USER_ERRORS as err:
            print(f"{type(err).__name__}: {err}\n(nothing was written)", file=sys.stderr)
            raise SystemExit(1) from None
        except Exception:  # not a known mistake: the job meets it again and keeps its traceback
            return

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        failed = sorted(sweep.glob(f"**/{names.ERROR_FILE}"))
        if failed:
            jobs = len(list(sweep.glob(f"**/{names.HYDRA_DIR}")))  # one per job Hydra started
            print(
                f"{len(failed)} of {max(jobs, len(failed))} jobs failed (their error.txt: "
                f"{', '.join(str(p.parent.relative_to(sweep)) for p in failed[:5])}"
                f"{' ...' if len(failed) > 5 else ''} in {sweep})",
                file=sys.stderr,
            )
            raise SystemExit(1)


@contextmanager
def job_config(config: DictConfig) -> Iterator[tuple[DictConfig, list[str]]]:
    """The task config (unresolved) and overrides as the single run's job will see them
    (Hydra's node removed, ``${hydra:...}`` set to the run folder Hydra is about to make)."""
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    view = copy.deepcopy(config)
    with read_write(view.hydra.runtime), open_dict(view.hydra.runtime):
        view.hydra.runtime.output_dir = os.path.abspath(str(view.hydra.run.dir))
    hydra_config.set_config(view)
    try:
        overrides = [str(o) for o in view.hydra.overrides.task]
        task = copy.copy(view)
        with read_write(task), open_dict(task):
            del task["hydra"]
        yield task, overrides
    finally:
        hydra_config.cfg = saved


def resolved(node: DictConfig) -> DictConfig:
    """A config node with its interpolations resolved (against the whole config)."""
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))
