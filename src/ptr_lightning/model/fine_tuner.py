"""The LightningModule: fine-tuning with a pluggable regularizer, one backward per step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ptr_lightning.core import names
from ptr_lightning.data.transforms import Normalize, SingleView
from ptr_lightning.model.nonfinite import NonFiniteGuard
from ptr_lightning.model.optimizer import OptimizerSettings, parameter_groups
from ptr_lightning.model.prediction_metrics import MeanClassAccuracy, entropy_bits
from ptr_lightning.model.schedules import PaperPlateauLR
from ptr_lightning.model.telemetry import TelemetrySettings, step_telemetry, weight_norm
from ptr_lightning.regularizers import Regularizer, StepTensors, TrainingData


class FineTuner(L.LightningModule):
    """``backbone`` -> feature tensor -> ``head`` -> logits, trained with a regularizer.

    Manual optimization, because the regularizer needs the cross-entropy's gradient at the
    feature tensor before the step: it reads it through the head only (autograd stops at the
    feature tensor), and the step then back-propagates ``regularizer(ce)`` through the backbone
    once. ``epoch_ce`` is the epoch's mean training cross-entropy (what the pseudo-task switch
    compares with T). The optimizer is ``optimizer.build`` on the parameter groups
    (:func:`~ptr_lightning.model.optimizer.parameter_groups`; ``depths``: each backbone
    parameter's depth below the head, for layer-wise learning-rate decay). The learning-rate
    ``schedule`` (built as ``schedule(optimizer, steps_per_epoch=...)``, checkpointed by
    Lightning) is told of every step and every epoch's end.

    Evaluation averages class probabilities over the views the eval transform returns (one view
    by default, ten crops for the paper's protocol). Validation during training uses
    ``val_transform`` (the centre crop: cheap, for the schedule); the test and
    ``trainer.predict`` use ``test_transform``, so a final predict pass over the validation
    images gives predictions comparable with the test's. The class probabilities of the test
    and of the last predict pass are kept in ``predictions["test"]`` and
    ``predictions["predict"]`` (under data parallelism, gathered from every rank in the data
    set's order) for the run's ``predictions.npz`` and ``predictions_val.npz``.

    Every ``telemetry.every_n_steps``-th step (when something logs) is also measured
    (:func:`ptr_lightning.model.telemetry.step_telemetry`, before the backward, without touching it)
    and written straight to the loggers at that step; validation logs ``val/entropy``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        regularizer: Regularizer,
        *,
        source_classifier: nn.Module | None = None,
        num_classes: int,
        optimizer: OptimizerSettings,
        schedule: Callable[[torch.optim.Optimizer], Any] = PaperPlateauLR,
        train_transform: nn.Module | None = None,
        val_transform: nn.Module | None = None,
        test_transform: nn.Module | None = None,
        telemetry: TelemetrySettings | None = None,
        depths: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.backbone, self.head, self.regularizer = backbone, head, regularizer
        self.train_transform = train_transform or Normalize()
        self.val_transform = val_transform or SingleView()
        self.test_transform = test_transform or SingleView()
        self.optimizer_settings, self.schedule = optimizer, schedule
        self.depths = depths
        self.telemetry = telemetry or TelemetrySettings()
        # nan_strategy="disable": no NaN check, which would read the value (a host sync) every
        # step; a non-finite loss stops training anyway (NonFiniteGuard).
        self.epoch_ce = MeanMetric(nan_strategy="disable")
        self.nonfinite = NonFiniteGuard()
        self._validated_epoch: int | None = None
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_1crop = MulticlassAccuracy(num_classes, average="micro")
        self.test_mean_class_acc = MeanClassAccuracy(num_classes)
        # The test's and the last predict pass's (probabilities, labels), per batch.
        self.predictions: dict[str, list[tuple[Tensor, Tensor]]] = {"test": [], "predict": []}
        self.regularizer.attach(self.backbone, self.head, source_classifier)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(images)
        return features, self.head(features)

    def configure_optimizers(self) -> dict[str, Any]:
        settings = self.optimizer_settings
        # L2-SP's penalty takes the place of weight decay on the parameters it pulls.
        decay = 0.0 if self.regularizer.replaces_weight_decay else settings.weight_decay
        # A regularizer's own trainable parts (LwF's old-task head) train like the new head.
        own = [p for p in self.regularizer.parameters() if p.requires_grad]
        groups = parameter_groups(settings, self.backbone, self.head, own, self.depths)
        optimizer = settings.build(groups, lr=settings.lr, weight_decay=decay)
        # "name": LearningRateMonitor logs lr/backbone, lr/head (, lr/regularizer).
        schedule = self.schedule(optimizer, steps_per_epoch=self.steps_per_epoch)
        scheduler = {"scheduler": schedule, "interval": "epoch", "name": names.LR}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one training epoch (asked only by a schedule that counts steps;
        Lightning's estimate sets the training data up)."""
        return max(1, math.ceil(self.trainer.estimated_stepping_batches / self.trainer.max_epochs))

    def on_train_start(self) -> None:
        # A run resumed from the checkpoint of the epoch its schedule ended stays ended.
        if self.lr_schedulers().stopped:
            self.trainer.should_stop = True

    def on_train_epoch_start(self) -> None:
        self.epoch_ce.reset()

    def on_train_epoch_end(self) -> None:
        # After the callbacks (the switch read epoch_ce), before the checkpoint is written.
        self.nonfinite.check(self.trainer)
        self.log(names.TRAIN_CE_EPOCH, self.epoch_ce.compute())
        schedule = self.lr_schedulers()
        schedule.end_epoch(self.validation_metrics())
        if schedule.stopped:
            self.trainer.should_stop = True

    def validation_metrics(self) -> Mapping[str, float] | None:
        """This epoch's validation loss and accuracy; ``None`` if the epoch had no validation
        (``trainer.callback_metrics`` keep the last validation's values through such epochs)."""
        if self._validated_epoch != self.current_epoch:
            return None
        metrics = self.trainer.callback_metrics
        return {key: float(metrics[key]) for key in (names.VAL_LOSS, names.VAL_ACC)}

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            strategy = self.trainer.strategy
            self.regularizer.reduce = lambda x: strategy.reduce(x, reduce_op="mean")
        # After the checkpoint was restored: a resumed run's data-derived state came back with it.
        restored = self.trainer.ckpt_path is not None
        data = TrainingData(self.target_training_images, self.train_transform, restored)
        self.regularizer.on_fit_start(data)

    def target_training_images(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The target's training images in a fixed shuffled order, as evaluation sees them (view
        0 of the validation transform), on the device; the same on every process and run.
        Shuffled: data sets list their images class by class, and DELTA reads only the first
        ``attention_images``, which should span the classes."""
        datamodule = self.trainer.datamodule
        dataset = datamodule.train_dataset
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
        loader = DataLoader(dataset, batch_size=datamodule.eval_batch_size, sampler=order)
        for images, labels in loader:
            yield self.val_transform(images.to(self.device))[:, 0], labels.to(self.device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer.training:
            return self.train_transform(images), labels
        if self.trainer.testing or self.trainer.predicting:
            return self.test_transform(images), labels
        return self.val_transform(images), labels

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        optimizer = self.optimizers()
        step = self.global_step  # the row of metrics.csv this batch's metrics go to
        measure = self.telemetry.due(step) and bool(self.loggers)
        features, logits = self(images)
        ce = F.cross_entropy(logits, labels)
        tensors = StepTensors(images, features, logits, labels, measure, global_step=step)
        total, stats = self.regularizer(ce, tensors)
        self.nonfinite.observe(self.trainer, ce, total)
        if measure:
            self.log_telemetry(step, ce, total, features, stats)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()
        self.lr_schedulers().end_step()

        self.epoch_ce.update(ce.detach(), weight=labels.shape[0])
        self.log(names.TRAIN_CE, ce.detach(), on_step=True, on_epoch=False, prog_bar=True)
        self.log(names.TRAIN_LOSS, total.detach(), on_step=True, on_epoch=False)
        # 1 only while a pseudo-task (PtR, FNP) is on; always-on baselines log 0.
        pseudo_task_on = self.regularizer.gated and self.regularizer.active
        self.log(names.PTR_ACTIVE, float(pseudo_task_on), on_step=True, on_epoch=False)
        per_step = {key: value for key, value in stats.items() if key not in names.TELEMETRY}
        if per_step:
            self.log_dict(per_step, on_step=True, on_epoch=False)
        return {"loss": total.detach(), names.TRAIN_CE: ce.detach(), "step": step}

    def log_telemetry(
        self, step: int, ce: Tensor, total: Tensor, features: Tensor, stats: Mapping[str, Any]
    ) -> None:
        """Measure this step (the regularizer's own diagnostics are in ``stats``) and log it."""
        feature_term = self.regularizer.feature_term and self.regularizer.active
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        measured = step_telemetry(ce, total - ce if feature_term else None, features, backbone)
        measured[names.HEAD_WEIGHT_NORM] = weight_norm(self.head)
        measured.update({key: value for key, value in stats.items() if key in names.TELEMETRY})
        self.log_at(step, measured)

    def log_at(self, step: int, metrics: Mapping[str, Tensor | float]) -> None:
        """Write ``metrics`` straight to the loggers as the row of ``step`` (which may be an
        earlier step): not thinned out by ``trainer.log_every_n_steps`` as ``self.log`` is."""
        row = {key: float(value) for key, value in metrics.items()}
        for logger in self.loggers:
            logger.log_metrics(row, step=step)

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
        self.log(names.VAL_LOSS, loss, on_epoch=True, prog_bar=True, sync_dist=True)
        if self.telemetry.enabled:
            entropy = entropy_bits(probs).mean()
            self.log(names.VAL_ENTROPY, entropy, on_epoch=True, sync_dist=True)
        self.log(names.VAL_ACC, self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._validated_epoch = self.current_epoch

    def on_test_epoch_end(self) -> None:
        self.gather_predictions("test")

    def on_predict_epoch_start(self) -> None:
        self.predictions["predict"] = []

    def on_predict_epoch_end(self) -> None:
        self.gather_predictions("predict")

    def gather_predictions(self, split: str) -> None:
        """Under data parallelism, every rank's predictions in the data set's order.

        The eval loaders give rank ``r`` of ``w`` the images ``r, r + w, r + 2w, ...`` (an
        unpadded distributed sampler, so each image is evaluated once); the predictions are
        padded to the same length for ``all_gather`` and put back in that order.
        """
        parts = self.predictions[split]
        if self.trainer.world_size == 1 or not parts:
            return
        probs, labels = (torch.cat(p).to(self.device) for p in zip(*parts, strict=True))
        counts = self.all_gather(torch.tensor(len(labels), device=self.device)).flatten()
        most, world = int(counts.max()), self.trainer.world_size
        probs = F.pad(probs, (0, 0, 0, most - len(probs)))
        labels = F.pad(labels, (0, most - len(labels)), value=-1)
        all_probs, all_labels = self.all_gather(probs), self.all_gather(labels)  # (w, most, ...)
        rows = [(rank, int(n)) for rank, n in enumerate(counts.tolist())]
        index = torch.cat([torch.arange(n) * world + rank for rank, n in rows]).argsort()
        self.predictions[split] = [
            (
                torch.cat([all_probs[rank, :n] for rank, n in rows]).cpu()[index],
                torch.cat([all_labels[rank, :n] for rank, n in rows]).cpu()[index],
            )
        ]

    def on_test_epoch_start(self) -> None:
        self.predictions["test"] = []

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, labels = batch
        per_view = self.view_probabilities(views)
        probs = per_view.mean(dim=1)  # the paper averages the classifier outputs over the views
        self.test_acc(probs, labels)
        self.test_acc_1crop(per_view[:, 0], labels)  # view 0 is the centre crop
        self.test_mean_class_acc(probs, labels)
        self.log(names.TEST_ACC, self.test_acc, on_epoch=True)
        self.log(names.TEST_ACC_1CROP, self.test_acc_1crop, on_epoch=True)
        self.log(names.TEST_MEAN_CLASS_ACC, self.test_mean_class_acc, on_epoch=True)
        self.predictions["test"].append((probs.cpu(), labels.cpu()))

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities averaged over the test's views; they and the labels are kept in
        ``predictions["predict"]``."""
        views, labels = batch
        probs = self.view_probabilities(views).mean(dim=1)
        self.predictions["predict"].append((probs.cpu(), labels.cpu()))
        return probs
