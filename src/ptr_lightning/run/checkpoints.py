"""Checkpoints: written atomically, with the random states, read with errors a user can act on."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from ptr_lightning.core.atomic_files import atomic_file
from ptr_lightning.core.errors import CheckpointError
from ptr_lightning.model.weights import is_torch_file

# What Lightning needs to continue a run from a checkpoint.
RESUMABLE_KEYS = ("state_dict", "epoch", "global_step", "loops", "optimizer_states")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but written next to the target and renamed over it.

    Lightning's own atomic save goes through a temporary file in the system temp folder and
    a move, which is a copy (not atomic) across file systems: a full disk left a truncated
    ``last.ckpt``. Here a failed write leaves the previous checkpoint untouched.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        # The interrupt outermost: a checkpoint being written is finished and renamed first.
        with interrupt_after(), atomic_file(Path(path), "wb") as f:
            torch.save(checkpoint, f)


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl+C (SIGINT) back until the block ends, then raise ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` raised inside ``torch.save``'s writer surfaces as torch's
    "unexpected pos" ``RuntimeError``: the run would end with that instead of its resume hint.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set signal handlers (and receives SIGINT)
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if received:
        raise KeyboardInterrupt


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (memory-mapped, so this is cheap), or a
    :class:`CheckpointError` naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not is_torch_file(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not the file torch.save writes): ckpt_path= "
            "and resume= take a run's checkpoints/last.ckpt."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {first_line(err)}): it is "
            "truncated or damaged. A run keeps only its last checkpoint: if this is it, start "
            "the run again; else give ckpt_path= another checkpoint."
        ) from None
    missing = [
        key for key in RESUMABLE_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise CheckpointError(
            f"{path} is not a checkpoint of a training run (it lacks {', '.join(missing)}): "
            "ckpt_path= and resume= continue a run of this project from checkpoints/last.ckpt; "
            "to start from weights only, use model.weights=<file>."
        )
    return checkpoint


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def check_fits(checkpoint: dict[str, Any], module: nn.Module, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless every tensor of ``checkpoint`` fits ``module``."""
    own = module.state_dict()
    saved = checkpoint["state_dict"]
    wrong = [
        f"{key}: checkpoint {tuple(value.shape)} vs this run {tuple(own[key].shape)}"
        for key, value in saved.items()
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape
    ]
    missing = sorted(key for key in own if key not in saved)
    if not (wrong or missing):
        return
    lines = [f"checkpoint {path} does not fit this run's model:"]
    lines += [f"  wrong shape: {line}" for line in wrong[:8]]
    if missing:
        lines.append(f"  missing: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    lines.append(
        "It was trained with another backbone or another number of classes; continue it with "
        "the config it was trained with (resume=<its run folder>), or start from its weights "
        "with model.weights=<file>, which gives the new classes a new classifier."
    )
    raise CheckpointError("\n".join(lines))


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


class RunClock(L.Callback):
    """The seconds a run has taken over all its processes: those before the last resume (kept
    in every checkpoint) and this process's since ``started``. Not Lightning's ``Timer``: it
    restores only the training stage's time, not an earlier process's decoding and tests."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.before = 0.0  # the seconds of the processes before this one, from the checkpoint

    @property
    def state_key(self) -> str:
        return "RunClock"

    def elapsed(self) -> float:
        """This process's seconds."""
        return time.monotonic() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.before + self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = float(state["seconds"])
