"""One live run per run folder: a lock held by the running process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from lightning.fabric.utilities.rank_zero import rank_zero_only

from ptr_lightning.core import names
from ptr_lightning.core.errors import RunFolderInUseError


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
        raise RunFolderInUseError(
            f"another run is using {folder} right now (it holds {names.LOCK_FILE}). Give this "
            "run its own folder (leave hydra.run.dir at its default, which is unique per "
            "launch), or wait for the other run to end."
        ) from None
    try:
        yield
    finally:
        lock.release()
