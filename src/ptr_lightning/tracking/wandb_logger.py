"""Experiment loggers. CSV is always written; W&B is added on request and never blocks."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ptr_lightning.core import names

log = logging.getLogger(__name__)

# W&B's own step axis under Lightning (WandbLogger defines it for every metric).
STEP_METRIC = "trainer/global_step"
REACH_TIMEOUT_S = 5.0  # how long to try opening a connection to the W&B server


def wandb_configured() -> bool:
    """True when this machine can log in to W&B without asking (API key in env or netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(urlsplit(wandb_host()).hostname or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_host() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def wandb_reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``url`` opens within ``timeout``, else why not."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as err:
        return f"{parts.hostname}:{port} unreachable: {err}"
    return None


def make_wandb_logger(
    save_dir: str,
    project: str,
    mode: str = "auto",
    init_timeout: float = 15,
    **kwargs: Any,
) -> Any | None:
    """A started :class:`WandbLogger`, or ``None`` (with a warning) when W&B cannot start.

    ``mode``: ``auto`` logs online when W&B is configured (API key or ``wandb login``) and
    offline otherwise, so nothing ever waits for a login; ``online``, ``offline`` and
    ``disabled`` force that mode; a ``WANDB_MODE`` set in the environment wins over all.
    An online run whose server cannot be reached (or does not answer within ``init_timeout``
    seconds) logs offline instead, saying so in one line. Offline runs land in
    ``<save_dir>/wandb/offline-run-*``; upload them with ``wandb sync``.

    The run's id is kept in ``<save_dir>/wandb_run_id.txt``: a resumed run (same folder)
    continues the same W&B run. ``kwargs`` go to ``WandbLogger`` / ``wandb.init`` (name, group,
    job_type, tags, log_model, ...).
    """
    mode = wandb_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    id_file = Path(save_dir) / names.WANDB_RUN_ID_FILE
    if id_file.is_file():
        kwargs.update(id=id_file.read_text().strip(), resume="allow")
    try:
        try:
            logger = start_wandb(save_dir, project, mode, init_timeout, **kwargs)
        except Exception as err:
            if mode != "online":
                raise
            log.warning(
                "%s; logging offline (upload later: wandb sync)", online_failure(err, init_timeout)
            )
            forget_failed_run()
            logger = start_wandb(save_dir, project, "offline", init_timeout, **kwargs)
    except Exception as err:  # auth, bad settings, no disk: training must go on regardless
        log.warning("W&B could not start (%s); continuing with the CSV logger only", err)
        return None
    if mode != "disabled":
        id_file.write_text(logger.experiment.id + "\n")
    return logger


def online_failure(err: Exception, init_timeout: float) -> str:
    """Why an online W&B run did not start: no answer in time, or the server's own answer
    (a bad API key: 401; a wrong entity or project: 403/404)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, TimeoutError) or any(
        words in first.lower() for words in ("timed out", "deadline exceeded")
    ):
        return f"W&B did not answer within {init_timeout:g} s"
    return f"W&B refused the online run ({first})"


def forget_failed_run() -> None:
    """Drop what a failed ``wandb.init`` left in this process, so the offline run can start
    (with a resumed run's id, W&B would otherwise say the id is in use)."""
    import wandb

    wandb.teardown()


def wandb_mode(mode: str) -> str:
    """The mode a run logs in: ``WANDB_MODE`` if set, else ``mode``, where ``auto`` is online
    when W&B is configured; online becomes offline (said in one line) when the server cannot
    be reached."""
    if os.environ.get("WANDB_MODE"):
        mode = os.environ["WANDB_MODE"]
    elif mode == "auto":
        mode = "online" if wandb_configured() else "offline"
    if mode == "online":
        unreachable = wandb_reachable(wandb_host())
        if unreachable:
            log.warning("W&B: %s; logging offline (upload later: wandb sync)", unreachable)
            return "offline"
    return mode


def start_wandb(save_dir: str, project: str, mode: str, init_timeout: float, **kwargs: Any) -> Any:
    """A ``WandbLogger`` whose W&B run has started (so a failure shows here, not mid-training),
    with the summaries the dashboards show: ``val/acc`` its maximum, ``test/*`` their last."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    settings = wandb.Settings(init_timeout=init_timeout)
    logger = WandbLogger(save_dir=save_dir, project=project, mode=mode, settings=settings, **kwargs)
    # Lightning always passes anonymous=None, which W&B (>= 0.19) warns about on every run.
    logger._wandb_init.pop("anonymous", None)
    run = logger.experiment
    run.define_metric(names.VAL_ACC, summary="max", step_metric=STEP_METRIC)
    run.define_metric(f"{names.TEST_PREFIX}*", summary="last", step_metric=STEP_METRIC)
    return logger


def wandb_loggers(loggers: list[Any]) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def finish_wandb() -> None:
    """Lightning never finishes the W&B run; without this the next job in a process reuses it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
