"""Callbacks that tests hand to the CLI, e.g.
``+callbacks.probe._target_=tests.probes.RecordPerRank +callbacks.probe.folder=...``:
they record what a process saw or make real faults happen at a chosen point."""

from __future__ import annotations

import json
import os
import resource
import signal
from pathlib import Path

import lightning as L

from ptr_lightning.core import names


class RecordPerRank(L.Callback):
    """Writes ``rank<N>.json`` per process: the pseudo-task weight w of every step and the
    epoch the pseudo-task switched on, as that rank saw them."""

    def __init__(self, folder: str) -> None:
        self.folder, self.w = Path(folder), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if names.PTR_W in trainer.callback_metrics:
            self.w.append(float(trainer.callback_metrics[names.PTR_W]))

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"w": self.w, "switch_epoch": pl_module.regularizer.switch_epoch}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class SignalAt(L.Callback):
    """Sends ``signum`` (a name, e.g. SIGTERM) to this process after training step ``step``,
    as a cluster's scheduler would: through the real signal handlers. With ``once`` (a file
    path) only the first process to get there does, so a requeued run is not signalled again."""

    def __init__(self, step: int, signum: str = "SIGTERM", once: str | None = None) -> None:
        self.step, self.signum = step, signal.Signals[signum]
        self.once = Path(once) if once else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.once is not None:
            if self.once.exists():
                return
            self.once.write_text(f"{self.signum.name} at step {self.step}\n")
        os.kill(os.getpid(), self.signum)


class DiskFullFrom(L.Callback):
    """From the start of ``epoch`` on, no file of this process may grow beyond ``max_bytes``
    (RLIMIT_FSIZE): writes past it fail with EFBIG, as on a full disk."""

    def __init__(self, epoch: int, max_bytes: int = 200_000) -> None:
        self.epoch, self.max_bytes = epoch, max_bytes

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_bytes, self.max_bytes))
