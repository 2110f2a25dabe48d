"""Callbacks that make an interrupted run cost only the time since its last checkpoint."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class RandomStateCheckpoint(L.Callback):
    """Saves the torch, CUDA, numpy and Python random states in every checkpoint and restores
    them when training resumes, so a resumed run draws the same shuffles, dropout masks and
    augmentations as the run that was never interrupted (Lightning saves no RNG state)."""

    @property
    def state_key(self) -> str:
        return "RandomStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # Plain tensors and numbers only, so the checkpoint loads with weights_only=True.
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Applied at once: Lightning restores callbacks after the run was set up (seeded, model
        # built) and before the first data loader of the resumed epoch draws its shuffle.
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointOnSigterm(L.Callback):
    """On SIGTERM (how clusters pre-empt jobs) write ``last.ckpt`` before the process exits.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary; this saves
    the state at that point (mid-epoch), and ``resume=<run folder>`` continues from it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            log.warning(
                "SIGTERM: checkpoint written to %s; resume with resume=%s",
                self.path,
                self.path.parent.parent,
            )
