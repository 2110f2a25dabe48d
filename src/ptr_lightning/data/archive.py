"""A paper data set (or the user's own image folders) as a DataModule.

The official archive's index is read by :mod:`ptr_lightning.data.readers`; every image is
decoded once into its letterboxed uint8 ``image_size`` x ``image_size`` tensor and kept in
memory (or memory-mapped from ``cache_dir``), and the random augmentation and the ten test
crops run on batched tensors on the training device (:mod:`ptr_lightning.data.transforms`), so a
GPU run is not bound by CPU workers.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptr_lightning.core.errors import ConfigError, DatasetError
from ptr_lightning.core.settings import check, one_of
from ptr_lightning.data.base import (
    DecodedImages,
    InMemoryDataModule,
    decode_samples,
    log_split_sizes,
)
from ptr_lightning.data.downloads import DOWNLOADS
from ptr_lightning.data.images import DECODE_WORKERS_RULE, IMAGE_SIZE_RULE
from ptr_lightning.data.readers import (
    READERS,
    VAL_FRACTION_RULE,
    ArchiveIndex,
    Sample,
    holdout_val,
)
from ptr_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CentreCrop,
    TenCrop,
    TrainAugment,
)

log = logging.getLogger(__name__)


class ArchiveDataModule(InMemoryDataModule):
    """Images from ``reader``'s archive layout under ``root``; items ``(uint8 image, label)``.

    Data sets without an official validation split hold out ``val_fraction`` of the training
    images per class, drawn with ``split_seed`` (kept apart from the training seed, so several
    training seeds share one split); so do the others with ``val_from_train``. Validation uses
    the centre crop; the test uses the paper's ten crops when ``ten_crop`` (view 0, the centre
    crop, gives ``test/acc_1crop``). A data set of fewer than two classes, or without
    validation or test images, is refused before any image is decoded.
    """

    RULES = {
        "reader": one_of("dataset.reader", READERS),
        "val_fraction": VAL_FRACTION_RULE,
        "image_size": IMAGE_SIZE_RULE,
        "decode_workers": DECODE_WORKERS_RULE,
    }

    def __init__(
        self,
        *,
        name: str,
        reader: str,
        root: str,
        reader_args: dict[str, Any] | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
        val_from_train: bool = False,
        split_seed: int = 0,
        image_size: int = 250,
        crop: int = 224,
        max_scale: float = 0.1,
        max_rotation: float = 10.0,
        flip: bool = True,
        ten_crop: bool = True,
        batch_size: int = 20,
        eval_batch_size: int = 50,
        num_workers: int = 0,
        decode_workers: int = 8,
        cache_dir: str | None = None,
        skip_unreadable: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Long because it takes every ``dataset.*`` key as a keyword: Hydra builds it from the
        config, and each key is checked here, once."""
        super().__init__(
            name=name,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            mean=mean,
            std=std,
        )
        check(
            self.RULES,
            reader=reader,
            val_fraction=val_fraction,
            image_size=image_size,
            decode_workers=decode_workers,
        )
        self.reader, self.root = reader, Path(root).expanduser()
        self.reader_args = dict(reader_args or {})
        self.download = download
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.val_from_train = val_from_train
        self.image_size = image_size
        self.decode_workers, self.skip_unreadable = decode_workers, skip_unreadable
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.skipped: dict[str, list[str]] = {}
        self.train_transform = TrainAugment(crop, max_scale, max_rotation, flip, mean=mean, std=std)
        self.val_transform = CentreCrop(crop, mean, std)
        self.test_transform = TenCrop(crop, mean, std) if ten_crop else CentreCrop(crop, mean, std)
        if crop > image_size:
            raise ConfigError(
                f"dataset.crop={crop} (the model's input, model.input.size, by default) must "
                f"not exceed dataset.image_size={image_size}: set dataset.image_size to a "
                f"letterbox larger than the crop (the paper: 250 for 224)"
            )

    def prepare_data(self) -> None:
        """Check that the data set is on disk in its layout, reading its index (no image is
        decoded, so this takes a second); download it first when it is missing and its site
        allows it (``download=true``). A missing or incomplete data set raises here."""
        try:
            index = self.read_index()
        except DatasetError as missing:
            if not self.download or self.reader not in DOWNLOADS:
                raise DatasetError(f"{missing}\n{self.where_to_point()}") from None
            not_found = missing
            try:
                DOWNLOADS[self.reader](self.root)
            except Exception as err:
                raise DatasetError(
                    f"{not_found}\n\nThe download failed too: {err}\n{self.where_to_point()}"
                ) from err
            index = self.read_index()
        # Splits the protocol cannot use (one class, no validation or test) fail here too.
        self.splits(index)

    def where_to_point(self) -> str:
        return (
            f"Point the run at the data with dataset.root=/path/to/{self.name} (or "
            f"paths.data_dir=/path/to/data, which holds {self.name}/)."
        )

    def read_index(self) -> ArchiveIndex:
        reader = READERS[self.reader]
        args = dict(self.reader_args)
        if "split_seed" in inspect.signature(reader).parameters:
            args["split_seed"] = self.split_seed
        return reader(self.root, **args)

    def splits(self, index: ArchiveIndex) -> dict[str, list[Sample]]:
        """The train / val / test samples of ``index`` as this run uses them."""
        self.class_names = list(index.class_names)
        if index.num_classes < 2:
            raise DatasetError(
                f"{self.name}: dataset.root={self.root} holds {index.num_classes} class "
                f"({', '.join(index.class_names)}); a classifier needs at least 2 classes."
            )
        if not index.test:
            raise DatasetError(
                f"{self.name}: no test images under {self.root}. The protocol tests the model "
                "of the last epoch: add a test split (for imagefolder, root/test/<class>/...)."
            )
        if index.val is not None and not self.val_from_train:
            if not index.val:
                raise DatasetError(
                    f"{self.name}: the data set's validation split is empty"
                    f"{self._val_source()}. Set dataset.val_from_train=true to hold out "
                    "dataset.val_fraction of the training images instead."
                )
            return {"train": index.train, "val": index.val, "test": index.test}
        train, val = holdout_val(
            index.train, fraction=self.val_fraction, split_seed=self.split_seed
        )
        if not val:
            raise DatasetError(
                f"{self.name}: holding out dataset.val_fraction={self.val_fraction} of the "
                "training images gave no validation image: no class has two training images. "
                "Add training images, or a validation split."
            )
        return {"train": train, "val": val, "test": index.test}

    def _val_source(self) -> str:
        """Which setting drew the data set's validation images, where one did."""
        if "val_per_class" not in self.reader_args:
            return ""
        per_class = self.reader_args["val_per_class"]
        return f" (dataset.reader_args.val_per_class={per_class} of the images left per class)"

    def _image_ids(self, samples: list[Sample]) -> list[str]:
        """Paths relative to the root (stable across machines), else absolute."""
        root = self.root.resolve()  # once: resolving stats every path component
        ids = []
        for sample in samples:
            try:
                ids.append(sample.path.relative_to(root).as_posix())
            except ValueError:
                ids.append(str(sample.path))
        return ids

    def _decode(self, split: str, samples: list[Sample]) -> DecodedImages:
        cache = None
        if self.cache_dir is not None:
            cache = self.cache_dir / f"{self.name}-{split}-{self.image_size}.npy"
        data, kept, unreadable = decode_samples(
            samples,
            size=self.image_size,
            num_workers=self.decode_workers,
            skip_unreadable=self.skip_unreadable,
            cache_file=cache,
        )
        if unreadable:
            self.skipped[split] = self._image_ids(unreadable)
            log.warning(
                "%s %s: skipped %d unreadable images (dataset.skip_unreadable=true), e.g. %s",
                self.name,
                split,
                len(unreadable),
                self.skipped[split][:3],
            )
        self.split_ids[split] = self._image_ids(kept)
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.split_ids:
            return
        if self.cache_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            log.warning(
                "%s: every data-parallel process decodes the images for itself; set "
                "dataset.cache_dir=<folder> so that one decodes and the others memory-map it",
                self.name,
            )
        index = self.read_index()
        splits = self.splits(index)
        labels = {split: [s.label for s in samples] for split, samples in splits.items()}
        log_split_sizes(self.name, labels, self.class_names)
        index.warn_left_out(self.name)
        for split, samples in splits.items():
            setattr(self, f"{split}_dataset", self._decode(split, samples))
