"""Joint training: learn the target task while training the source task on its own images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import check, integer, non_negative
from ptr_lightning.core.tensors import at_least_float32
from ptr_lightning.regularizers.base import Regularizer, StepTensors, TrainingData
from ptr_lightning.regularizers.source_model import (
    last_linear_outputs,
    require_source_classifier,
    source_head,
)


class SourceBatches(Protocol):
    """The source task's labelled images, as JointTraining draws them (e.g.
    :class:`ptr_lightning.data.source_images.SourceImages`)."""

    root: object
    class_names: list[str]

    @property
    def num_classes(self) -> int: ...

    def setup(self) -> None: ...

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]: ...


class JointTraining(Regularizer):
    """Joint training (Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017: the
    "joint training" baseline, with the source task's real images; the PtR paper's JointTrain,
    Tables 2-3).

    ``L = L_ce + weight * CE(source_head(backbone(x_s)), y_s)``: each step also draws a batch
    ``(x_s, y_s)`` of the source task's training images (``source``, built from
    ``regularizer.source_root``), augmented on the device by the target's training transform,
    and adds the cross-entropy of the source classifier on it. ``source_head`` is a trainable
    copy of the source classifier (with the head modules before it, VGG's dropout) on the
    shared backbone, trained with the rest; its parameters are this module's only trainable
    ones and must be given to the optimizer. Source batch k of the run is a function of
    ``seed`` and k (the step's ``global_step``; under data parallelism, ``global_step x world
    size + rank``), so a resumed run draws the same batches.
    Default ``weight = 1`` (the source loss weighs as much as the target's; Li & Hoiem's
    lambda_o = 1), ``batch_size``: the target's.

    ``source(root=source_root)`` builds the reader of the source images (from the config: a
    partial :class:`~ptr_lightning.data.source_images.SourceImages` that reads
    ``<source_root>/train/<class>/<image>`` as the target's images are read). The source
    classifier comes from ``model.weights`` (the model trained on the source task, with its
    head) and must have one output per class of the source folder: :meth:`attach` refuses a
    mismatch, reading only the folder's index. The images are decoded when fitting starts
    (:meth:`on_fit_start`), on every process, also when a run resumes.
    """

    RULES = {
        "weight": non_negative("regularizer.weight"),
        "batch_size": integer("regularizer.batch_size", 1),
    }

    def __init__(
        self,
        source_root: str | None,
        source: Callable[..., SourceBatches],
        weight: float = 1.0,
        batch_size: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check(self.RULES, weight=weight, batch_size=batch_size)
        self.weight, self.batch_size, self.seed = float(weight), int(batch_size), int(seed)
        self.source = source(root=source_root)
        self.source_head: nn.Module | None = None
        self._backbone: tuple[nn.Module] | None = None  # referenced, owned by the LightningModule
        self._transform: Callable[[Tensor], Tensor] | None = None

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        source_classifier = require_source_classifier("JointTrain", source_classifier)
        outputs, classes = last_linear_outputs(source_classifier), self.source.num_classes
        if outputs != classes:
            shown = ", ".join(self.source.class_names[:5]) + (", ..." if classes > 5 else "")
            raise ConfigError(
                f"regularizer.source_root={self.source.root} holds {classes} classes ({shown}) "
                f"but the source classifier of model.weights has {outputs} outputs. JointTrain "
                "trains the source task with the source model's own classifier: give "
                "model.weights the model trained on these classes (e.g. <its run "
                "folder>/checkpoints/last.ckpt), or regularizer.source_root its training images."
            )
        self._backbone = (backbone,)
        self.source_head = source_head(head, source_classifier)

    def on_fit_start(self, data: TrainingData) -> None:
        self.source.setup()
        self._transform = data.train_transform
        super().on_fit_start(data)

    @staticmethod
    def stream_index(step: StepTensors) -> int:
        """Which source batch this step draws: under data parallelism each rank its own."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            return step.global_step * world + rank
        return step.global_step

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        if self._backbone is None or self.source_head is None or self._transform is None:
            raise RuntimeError("JointTraining.attach and on_fit_start must run before a step")
        images, labels = self.source.batch(self.stream_index(step), self.batch_size, self.seed)
        device = step.inputs.device
        images = self._transform(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        logits = at_least_float32(self.source_head(self._backbone[0](images)))
        source_ce = F.cross_entropy(logits, labels)
        term = self.weight * source_ce
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "joint_train/source_ce": source_ce.detach(),
            "joint_train/source_acc": accuracy.detach(),
        }
