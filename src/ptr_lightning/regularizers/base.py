"""The one call every regularizer answers, so the training step never branches on its kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:  # Lightning is imported by the run, not to check a regularizer's settings
    import lightning as L


@dataclass(frozen=True)
class StepTensors:
    """What one training step produced, for a regularizer to read.

    ``features`` is the (B, D) feature tensor (the classifier's input), inside the graph of
    ``logits``; ``inputs`` are the images as the backbone saw them. ``measure`` marks a
    telemetry step: a regularizer may add its own diagnostics (``names.TELEMETRY``) to its
    stats then. ``global_step`` is the step's number in the run (the same after a resume), for
    what must follow the steps in lockstep (JointTrain's source batches).
    """

    inputs: Tensor
    features: Tensor
    logits: Tensor
    labels: Tensor
    measure: bool = False
    global_step: int = 0


@dataclass(frozen=True)
class TrainingData:
    """What a regularizer may read of the run's data when fitting starts.

    ``target_images()`` yields the target's training images in a fixed shuffled order, as evaluation
    sees them (normalized, the centre view), with their labels, on the training device;
    ``train_transform`` turns a uint8 batch on the device into the augmented, normalized one
    that a training step sees; ``restored`` says that the run resumes from a checkpoint.
    """

    target_images: Callable[[], Iterator[tuple[Tensor, Tensor]]]
    train_transform: Callable[[Tensor], Tensor]
    restored: bool = False


class Regularizer(nn.Module):
    """``total, stats = regularizer(ce_loss, step)``.

    ``total`` is what the step back-propagates (``ce_loss`` plus the regularizer's term);
    ``stats`` maps stable metric names to detached scalars for logging.

    A *gated* regularizer stays off (``total == ce_loss``) until it is switched on. The
    decision is a Lightning callback's (:meth:`callbacks` names it); the regularizer only
    holds the state (:attr:`active`, :attr:`switch_epoch`) and reads it. A gated regularizer
    keeps that state in its ``state_dict`` (torch's extra state), so every checkpoint carries
    it; as Python values rather than a device buffer, because reading a device tensor in every
    step would stall the GPU. Other regularizers are always on.
    """

    gated: bool = False
    switch_rule: str | None = None  # a gated regularizer's rule (regularizer.switch)
    replaces_weight_decay: bool = False  # True: the optimizer applies no weight decay
    # True: its term is a function of the feature tensor alone (PtR, FNP, the feature-norm
    # penalty), so telemetry reports that term's gradients as grad/*_ptr.
    feature_term: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.active = not self.gated
        self.switch_epoch: int | None = None  # the epoch after which it was first switched on
        # A mean across data-parallel ranks, set by the LightningModule under DDP, for terms
        # that must be the same on every rank (PtR's gradient norms).
        self.reduce: Callable[[Tensor], Tensor] | None = None

    def switch(self, on: bool, epoch: int) -> None:
        """Set by the switch callback once per epoch, with its decision at the end of
        ``epoch``; the first switch-on is kept."""
        if on and self.switch_epoch is None:
            self.switch_epoch = epoch
        self.active = on

    def callbacks(self) -> list[L.Callback]:
        """The Lightning callbacks this regularizer needs (a gated one: its switch)."""
        return []

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        """Called once with the model before training, for regularizers that keep references
        (as buffers, so they follow ``.to()`` and the checkpoint). ``source_classifier`` is the
        pre-trained model's own last layer (e.g. ImageNet's), replaced in ``head``."""

    def on_fit_start(self, data: TrainingData) -> None:
        """Called by the LightningModule each time fitting starts, fresh or resumed, on every
        process. By default it runs :meth:`fit_to_target` once in a run's life: not when the
        run resumes, whose checkpoint brought back what it computed."""
        if not data.restored:
            self.fit_to_target(data.target_images())

    def fit_to_target(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Compute, before the first step, the state that depends on the target's training
        data (DELTA's channel attention, Co-Tuning's category relationship), into persistent
        buffers so that the checkpoint carries it. Nothing by default."""

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError
