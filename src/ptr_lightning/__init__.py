"""Pseudo-task Regularization (PtR) for CNN fine-tuning, with PyTorch Lightning and Hydra."""

from __future__ import annotations

from typing import Any

__all__ = ["pseudo_task_loss"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that the command line's first answer (--help, a bad setting) does not wait for
    # torch to import.
    if name == "pseudo_task_loss":
        from ptr_lightning.ptr import pseudo_task_loss

        return pseudo_task_loss
    raise AttributeError(f"module 'ptr_lightning' has no attribute {name!r}")
