"""Pseudo-task Regularization (PtR) for CNN fine-tuning, with PyTorch Lightning and Hydra."""

from ptr_lightning.ptr import pseudo_task_loss

__all__ = ["pseudo_task_loss"]
__version__ = "0.1.0"
