"""The one call every regularizer answers, so the training step never branches on its kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class StepTensors:
    """What one training step produced, for a regularizer to read.

    ``features`` is the (B, D) feature tensor (the classifier's input), inside the graph of
    ``logits``; ``inputs`` are the images as the backbone saw them.
    """

    inputs: Tensor
    features: Tensor
    logits: Tensor
    labels: Tensor


class Regularizer(nn.Module):
    """``total, stats = regularizer(ce_loss, step)``.

    ``total`` is what the step back-propagates (``ce_loss`` plus the regularizer's term);
    ``stats`` maps stable metric names to detached scalars for logging.

    A *gated* regularizer stays off (``total == ce_loss``) until :attr:`active` is set, which
    :class:`~ptr_lightning.callbacks.PseudoTaskSwitch` does once the epoch-mean training
    cross-entropy falls below its threshold T. Others are always on.
    """

    gated: bool = False
    replaces_weight_decay: bool = False  # True: the optimizer applies no weight decay

    def __init__(self) -> None:
        super().__init__()
        self.active = not self.gated
        # A mean across data-parallel ranks, set by the LightningModule under DDP, for terms
        # that must be the same on every rank (PtR's gradient norms).
        self.reduce: Callable[[Tensor], Tensor] | None = None

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        """Called once with the model before training, for regularizers that keep references
        (as buffers, so they follow ``.to()`` and the checkpoint). ``source_classifier`` is the
        pre-trained model's own last layer (e.g. ImageNet's), replaced in ``head``."""

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError
