"""Callbacks that make an interrupted run cost only the time since its last checkpoint."""

from __future__ import annotations

import random
import signal
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException


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
