"""The LightningModule: fine-tuning with a pluggable regularizer, one backward per step."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ptr_lightning.regularizers import Regularizer, StepTensors
from ptr_lightning.transforms import Normalize, SingleView


class FineTuner(L.LightningModule):
    """``backbone`` -> feature tensor -> ``head`` -> logits, trained with SGD and a regularizer.

    Manual optimization, because the regularizer needs the cross-entropy's gradient at the
    feature tensor before the step: it reads it through the head only (autograd stops at the
    feature tensor), and the step then back-propagates ``regularizer(ce)`` through the backbone
    once. Evaluation averages class probabilities over the views the eval transform returns
    (one view by default, ten crops for the paper's protocol).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        regularizer: Regularizer,
        *,
        source_classifier: nn.Module | None = None,
        num_classes: int,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        head_lr_mult: float = 1.0,
        train_transform: nn.Module | None = None,
        eval_transform: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.backbone, self.head, self.regularizer = backbone, head, regularizer
        self.train_transform = train_transform or Normalize()
        self.eval_transform = eval_transform or SingleView()
        self.optim = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "head_lr_mult": head_lr_mult,
        }
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
        self.test_mean_class_acc = MulticlassAccuracy(num_classes, average="macro")
        self.regularizer.attach(self.backbone, self.head, source_classifier)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(images)
        return features, self.head(features)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.optim["lr"]
        groups = [
            {"params": self.backbone.parameters(), "lr": lr},
            {"params": self.head.parameters(), "lr": lr * self.optim["head_lr_mult"]},
        ]
        return torch.optim.SGD(
            groups, lr=lr, momentum=self.optim["momentum"], weight_decay=self.optim["weight_decay"]
        )

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1 and hasattr(self.regularizer, "reduce"):
            strategy = self.trainer.strategy
            self.regularizer.reduce = lambda x: strategy.reduce(x, reduce_op="mean")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer.training:
            return self.train_transform(images), labels
        return self.eval_transform(images), labels

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        optimizer = self.optimizers()
        features, logits = self(images)
        ce = F.cross_entropy(logits, labels)
        total, stats = self.regularizer(ce, StepTensors(images, features, logits, labels))
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()

        self.log("train/ce", ce.detach(), on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/loss", total.detach(), on_step=True, on_epoch=False)
        self.log("ptr/active", float(self.regularizer.active), on_step=True, on_epoch=False)
        if stats:
            self.log_dict(stats, on_step=True, on_epoch=False)
        return {"loss": total.detach(), "ce": ce.detach(), "batch_size": labels.shape[0]}

    def _view_probabilities(self, views: Tensor) -> Tensor:
        """(B, V, C, H, W) -> class probabilities (B, K) averaged over the V views."""
        b, v = views.shape[:2]
        _, logits = self(views.flatten(0, 1))
        return logits.float().softmax(dim=-1).view(b, v, -1).mean(dim=1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, labels = batch
        probs = self._view_probabilities(views)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
        self.val_acc(probs, labels)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, labels = batch
        probs = self._view_probabilities(views)
        self.test_acc(probs, labels)
        self.test_mean_class_acc(probs, labels)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/mean_class_acc", self.test_mean_class_acc, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = getattr(self.regularizer, "generator_state", lambda: None)()
        if state is not None:
            checkpoint["pseudo_target_generator"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "pseudo_target_generator" in checkpoint:
            self.regularizer.load_generator_state(checkpoint["pseudo_target_generator"])
