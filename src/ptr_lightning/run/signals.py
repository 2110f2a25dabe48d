"""What stopped a run (SIGTERM from a scheduler, SIGINT from Ctrl+C) and how to continue it."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ptr_lightning.core import names
from ptr_lightning.run.checkpoints import read_checkpoint


class SignalRecorder(L.Callback):
    """Records which signal stopped training: SIGTERM (how clusters pre-empt jobs; Lightning
    turns it into a ``SIGTERMException`` at the next batch) or SIGINT (Ctrl+C; Lightning shuts
    down and exits).

    No checkpoint is written at that point on purpose. A checkpoint taken mid-epoch cannot be
    continued exactly: Lightning restarts the epoch's data loader from a fresh shuffle (drawn
    from the random state at the signal, not at the epoch's start), and the epoch's
    cross-entropy mean, which decides the pseudo-task switch, would start from the middle. So a
    run resumes from the checkpoint of the last finished epoch and repeats the interrupted one:
    with ``trainer.deterministic=true`` it then ends exactly as the uninterrupted run.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            self.signum = signal.SIGTERM
        elif isinstance(exception, KeyboardInterrupt):
            self.signum = signal.SIGINT


def interruption_message(signum: int, out: Path) -> str:
    """What stopped the run and from where ``resume=`` continues it."""
    name = signal.Signals(signum).name
    last = out / names.LAST_CHECKPOINT
    if not last.is_file():
        return (
            f"terminated by {name} before its first epoch ended: no checkpoint to resume "
            "from; start the run again."
        )
    epoch = read_checkpoint(last)["epoch"]
    return (
        f"terminated by {name}. {names.LAST_CHECKPOINT} holds the end of epoch {epoch}: "
        f"resume with  python -m ptr_lightning resume={out}  (the interrupted epoch is "
        "repeated from its start, so the run ends as if never interrupted)."
    )
