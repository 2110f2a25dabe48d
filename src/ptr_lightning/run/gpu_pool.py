"""One GPU per job when a multirun runs several jobs at once on one machine (cluster=local_gpus)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, open_dict

from ptr_lightning.core.errors import ConfigError

log = logging.getLogger(__name__)


@contextmanager
def claim_gpu(pool: Path, count: int, poll_s: float = 1.0) -> Iterator[int]:
    """The index of a GPU that no other job of ``pool`` holds, held until the block ends.

    One OS lock file per GPU in ``pool`` (released when the job's process ends, however it
    ends). With more jobs than GPUs, a job waits until one is free.
    """
    pool.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(count):
            lock = FileLock(pool / f"gpu{index}.lock", timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            try:
                log.info("this job runs on GPU %d (pool %s)", index, pool)
                yield index
            finally:
                lock.release()
            return
        if not waited:
            log.info("all %d GPUs of %s are busy: waiting for one", count, pool)
            waited = True
        time.sleep(poll_s)


@contextmanager
def gpu_of_the_pool(cfg: DictConfig) -> Iterator[None]:
    """With ``gpu_pool`` (cluster=local_gpus), run on a GPU no other job of the sweep holds."""
    if not cfg.get("gpu_pool"):
        yield
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(f"gpu_pool={cfg.gpu_pool}: no GPU is visible to this job")
    with claim_gpu(Path(cfg.gpu_pool), count) as index:
        with open_dict(cfg):
            cfg.trainer.accelerator, cfg.trainer.devices = "gpu", [index]
        yield
