"""A callback for the DDP tests, given on the command line as
``+callbacks.probe._target_=tests.rank_probe.RecordPerRank +callbacks.probe.folder=...``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from ptr_lightning import names


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
