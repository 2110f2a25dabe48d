"""Experiment loggers. CSV is always written; W&B is added on request and never blocks."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def wandb_configured() -> bool:
    """True when this machine can log in to W&B without asking (API key in env or netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def make_wandb_logger(save_dir: str, project: str, mode: str = "auto", **kwargs: Any) -> Any | None:
    """A started :class:`WandbLogger`, or ``None`` (with a warning) when W&B cannot start.

    ``mode``: ``auto`` logs online when W&B is configured (API key or ``wandb login``) and
    offline otherwise, so nothing ever waits for a login; ``online``, ``offline`` and
    ``disabled`` force that mode; a ``WANDB_MODE`` set in the environment wins over all.
    Offline runs land in ``<save_dir>/wandb/offline-run-*``; upload them with ``wandb sync``.
    """
    from lightning.pytorch.loggers import WandbLogger

    if os.environ.get("WANDB_MODE"):
        mode = os.environ["WANDB_MODE"]
    elif mode == "auto":
        mode = "online" if wandb_configured() else "offline"
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    try:
        logger = WandbLogger(save_dir=save_dir, project=project, mode=mode, **kwargs)
        _ = logger.experiment  # start the run now: a failure is caught here, not mid-training
    except Exception as err:  # network, auth, bad settings: training must go on regardless
        log.warning("W&B could not start (%s); continuing with the CSV logger only", err)
        return None
    return logger


def finish_wandb() -> None:
    """Lightning never finishes the W&B run; without this the next job in a process reuses it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
