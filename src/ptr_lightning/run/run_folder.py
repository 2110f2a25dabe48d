"""The run folder: one live run per folder (a lock held by the running process), and a folder
that holds a finished run is never trained over unless the user says so."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from ptr_lightning.core import names
from ptr_lightning.core.errors import RunFolderError, RunFolderInUseError

log = logging.getLogger(__name__)


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this run, or raise :class:`RunFolderInUseError` if a live run does.

    An OS file lock (``.lock`` in the folder): released on any exit of the process, a crash
    or SIGKILL included, so a folder is never left locked by a dead run. Only the process of
    global rank 0 takes it (data-parallel ranks share the folder).
    """
    if rank_zero_only.rank != 0:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / names.LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_use(folder) from None
    try:
        yield
    finally:
        lock.release()


def in_use(folder: Path) -> RunFolderInUseError:
    return RunFolderInUseError(
        f"another run is using {folder} right now. Give this run its own folder (leave "
        "hydra.run.dir at its default, which is unique per launch), or wait for the other run "
        "to end."
    )


# The folder checks and replacing outputs are rank 0's: data-parallel ranks share its folder.
@rank_zero_only
def refuse_if_live(folder: Path) -> None:
    """Raise :class:`RunFolderInUseError` while a live run holds ``folder`` (nothing written)."""
    lock_file = folder / names.LOCK_FILE
    if not lock_file.is_file():
        return
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_use(folder) from None
    lock.release()


def outputs_in(folder: Path) -> list[str]:
    """The run outputs (``names.RUN_OUTPUTS``) that ``folder`` holds."""
    return [name for name in names.RUN_OUTPUTS if (folder / name).exists()]


@rank_zero_only
def refuse_to_train_over(cfg: DictConfig) -> None:
    """Raise :class:`RunFolderError` when ``cfg``'s run folder holds a run that this one, which
    neither resumes it nor asks to overwrite it, would train over; or when ``overwrite=true``
    would delete the checkpoint this run starts from."""
    if cfg.get("resume") or not cfg.paths.get("output_dir"):
        return
    folder = Path(cfg.paths.output_dir)
    if cfg.get("overwrite"):
        ckpt = cfg.get("ckpt_path")
        if ckpt and Path(ckpt).resolve().is_relative_to(folder.resolve()):
            raise RunFolderError(
                f"overwrite=true would delete ckpt_path={ckpt}, the checkpoint this run starts "
                f"from. resume={folder} continues that run; or copy the checkpoint elsewhere."
            )
        return
    if not any((folder / marker).exists() for marker in names.RUN_MARKERS):
        return
    found = ", ".join(outputs_in(folder))
    raise RunFolderError(
        f"{folder} holds a run ({found}). resume={folder} continues it; overwrite=true starts "
        f"a new run in that folder and replaces {found}; or leave hydra.run.dir at its default "
        "(a new folder per launch)."
    )


@rank_zero_only
def replace_outputs(folder: Path) -> None:
    """``overwrite=true``: delete the earlier run's outputs before this run writes its own."""
    found = outputs_in(folder)
    if found:
        log.warning(
            "overwrite=true: replacing the earlier run's %s in %s", ", ".join(found), folder
        )
    for name in found:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
