"""What every DataModule of this project provides, and the loaders they share.

After ``setup()``: ``train_dataset``, ``val_dataset``, ``test_dataset`` (items are
``(uint8 image (3, H, W), int label)``), ``num_classes``, ``class_names``, ``split_ids`` (the
image ids of each split, saved to the run folder) and the batched on-device transforms
``train_transform``, ``val_transform``, ``test_transform`` that the LightningModule applies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ptr_lightning.core.settings import check, integer
from ptr_lightning.data.images import decode_all
from ptr_lightning.data.readers import Sample
from ptr_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize, SingleView

log = logging.getLogger(__name__)
_MAX_NAMED = 3


def decode_samples(
    samples: list[Sample],
    *,
    size: int,
    num_workers: int,
    skip_unreadable: bool,
    cache_file: Path | None,
) -> tuple[DecodedImages, list[Sample], list[Sample]]:
    """The images of ``samples`` decoded (:func:`decode_all`) with their labels, the samples
    they are, and the unreadable samples left out (only with ``skip_unreadable``)."""
    images, skipped = decode_all(
        [s.path for s in samples],
        size=size,
        num_workers=num_workers,
        skip_unreadable=skip_unreadable,
        cache_file=cache_file,
    )
    left_out = set(skipped)
    kept = [s for i, s in enumerate(samples) if i not in left_out]
    labels = torch.tensor([s.label for s in kept], dtype=torch.long)
    return DecodedImages(images, labels), kept, [samples[i] for i in skipped]


def log_split_sizes(
    name: str, labels: Mapping[str, Sequence[int]], class_names: Sequence[str]
) -> None:
    """One line with each split's image and class counts; a warning for a split that lacks
    some classes (its accuracy then says nothing about them)."""
    present = {split: set(split_labels) for split, split_labels in labels.items()}
    sizes = ", ".join(
        f"{split} {len(labels[split])} images / {len(present[split])} classes" for split in labels
    )
    log.info("%s: %d classes; %s", name, len(class_names), sizes)
    for split, found in present.items():
        missing = [c for i, c in enumerate(class_names) if i not in found]
        if missing:
            log.warning(
                "%s: %s has no image of %d of the %d classes, e.g. %s",
                name,
                split,
                len(missing),
                len(class_names),
                ", ".join(missing[:_MAX_NAMED]),
            )


class DecodedImages(Dataset):
    """Decoded uint8 images (N, 3, H, W) and their labels; an item is ``(image, int label)``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class InMemoryDataModule(L.LightningDataModule):
    """Loaders over decoded uint8 tensors: batching only, the per-image work is done already."""

    RULES = {
        "batch_size": integer("dataset.batch_size", 1),
        "eval_batch_size": integer("dataset.eval_batch_size", 1),
        "num_workers": integer("dataset.num_workers", 0),
    }

    def __init__(
        self,
        *,
        name: str,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        check(
            InMemoryDataModule.RULES,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
        )
        self.name = name
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.class_names: list[str] = []
        self.split_ids: dict[str, list[str]] = {}
        self.train_transform: nn.Module = Normalize(mean, std)
        self.val_transform: nn.Module = SingleView(mean, std)
        self.test_transform: nn.Module = SingleView(mean, std)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        sampler = None
        if not train and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each image once across the ranks (Lightning's own sampler pads with repeats),
            # so the accuracies and the gathered predictions count every test image once.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            sampler=sampler,
            # BatchNorm cannot train on a batch of one image: drop a lone last one (it is
            # reshuffled into other batches in the next epochs).
            drop_last=train and len(dataset) % self.batch_size == 1,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, train=False)
