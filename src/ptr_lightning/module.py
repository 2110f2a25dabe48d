"""The LightningModule: fine-tuning with a pluggable regularizer, one backward per step."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ptr_lightning.errors import NonFiniteLossError
from ptr_lightning.regularizers import Regularizer, StepTensors
from ptr_lightning.transforms import Normalize, SingleView


class FineTuner(L.LightningModule):
    """``backbone`` -> feature tensor -> ``head`` -> logits, trained with SGD and a regularizer.

    Manual optimization, because the regularizer needs the cross-entropy's gradient at the
    feature tensor before the step: it reads it through the head only (autograd stops at the
    feature tensor), and the step then back-propagates ``regularizer(ce)`` through the backbone
    once. Evaluation averages class probabilities over the views the eval transform returns
    (one view by default, ten crops for the paper's protocol); the test's class probabilities
    of the last validation epoch and of the test are kept in ``predictions`` for the run's
    ``predictions_val.npz`` and ``predictions.npz``.
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
        val_transform: nn.Module | None = None,
        test_transform: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.backbone, self.head, self.regularizer = backbone, head, regularizer
        self.train_transform = train_transform or Normalize()
        self.val_transform = val_transform or SingleView()
        self.test_transform = test_transform or SingleView()
        self.optim = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "head_lr_mult": head_lr_mult,
        }
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_1crop = MulticlassAccuracy(num_classes, average="micro")
        self.test_mean_class_acc = MulticlassAccuracy(num_classes, average="macro")
        # The last validation epoch's and the test's (probabilities, labels), per batch.
        self.predictions: dict[str, list[tuple[Tensor, Tensor]]] = {"val": [], "test": []}
        self.regularizer.attach(self.backbone, self.head, source_classifier)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(images)
        return features, self.head(features)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr, head_lr = self.optim["lr"], self.optim["lr"] * self.optim["head_lr_mult"]
        # L2-SP's penalty takes the place of weight decay on the parameters it pulls.
        decay = 0.0 if self.regularizer.replaces_weight_decay else self.optim["weight_decay"]
        groups = [
            {"params": list(self.backbone.parameters()), "lr": lr, "weight_decay": decay},
            {"params": list(self.head.parameters()), "lr": head_lr, "weight_decay": decay},
        ]
        # A regularizer's own trainable parts (LwF's old-task head) train like the new head.
        own = [p for p in self.regularizer.parameters() if p.requires_grad]
        if own:
            groups.append({"params": own, "lr": head_lr, "weight_decay": decay})
        return torch.optim.SGD(groups, lr=lr, momentum=self.optim["momentum"])

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            strategy = self.trainer.strategy
            self.regularizer.reduce = lambda x: strategy.reduce(x, reduce_op="mean")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer.training:
            return self.train_transform(images), labels
        if self.trainer.testing:
            return self.test_transform(images), labels
        return self.val_transform(images), labels

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        optimizer = self.optimizers()
        features, logits = self(images)
        ce = F.cross_entropy(logits, labels)
        total, stats = self.regularizer(ce, StepTensors(images, features, logits, labels))
        self.check_finite(ce, total)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()

        self.log("train/ce", ce.detach(), on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/loss", total.detach(), on_step=True, on_epoch=False)
        # 1 only while a pseudo-task (PtR, FNP) is on; always-on baselines log 0.
        pseudo_task_on = self.regularizer.gated and self.regularizer.active
        self.log("ptr/active", float(pseudo_task_on), on_step=True, on_epoch=False)
        if stats:
            self.log_dict(stats, on_step=True, on_epoch=False)
        return {"loss": total.detach(), "ce": ce.detach(), "batch_size": labels.shape[0]}

    def check_finite(self, ce: Tensor, total: Tensor) -> None:
        """Stop before a non-finite loss reaches the weights (the last checkpoint stays good)."""
        finite = torch.isfinite(total.detach()).float()
        if self.trainer.world_size > 1:  # every rank must stop together, or the others hang
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        if bool(finite):
            return
        culprit = "train/ce" if not bool(torch.isfinite(ce)) else "the regularizer's term"
        raise NonFiniteLossError(
            f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{self.trainer.fit_loop.epoch_loop.batch_idx}): {culprit} is "
            f"{float(total - ce) if culprit != 'train/ce' else float(ce)}. The weights were not "
            "updated; the last checkpoint (checkpoints/last.ckpt) is from before it. Lower "
            "model.lr, or check the data and the regularizer's settings."
        )

    def view_probabilities(self, views: Tensor) -> Tensor:
        """(B, V, C, H, W) -> class probabilities (B, V, K) of each view."""
        b, v = views.shape[:2]
        _, logits = self(views.flatten(0, 1))
        return logits.float().softmax(dim=-1).view(b, v, -1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, labels = batch
        probs = self.view_probabilities(views).mean(dim=1)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
        self.val_acc(probs, labels)
        # Synced: the schedule's decisions must be the same on every rank.
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.predictions["val"].append((probs.cpu(), labels.cpu()))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self.predictions["val"] = []

    def on_test_epoch_start(self) -> None:
        self.predictions["test"] = []

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, labels = batch
        per_view = self.view_probabilities(views)
        probs = per_view.mean(dim=1)  # the paper averages the classifier outputs over the views
        self.test_acc(probs, labels)
        self.test_acc_1crop(per_view[:, 0], labels)  # view 0 is the centre crop
        self.test_mean_class_acc(probs, labels)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/acc_1crop", self.test_acc_1crop, on_epoch=True)
        self.log("test/mean_class_acc", self.test_mean_class_acc, on_epoch=True)
        self.predictions["test"].append((probs.cpu(), labels.cpu()))
