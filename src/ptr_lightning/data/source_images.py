"""The source task's training images, for JointTrain: an image folder read as the target's are.

``<source_root>/train/<class>/<image>`` is read by the image-folder reader, decoded once into
letterboxed uint8 tensors of the target's ``image_size`` (memory-mapped from the target's
``cache_dir`` when it has one) and served as an endless stream of batches in lockstep with the
training steps: batch ``k`` of the run is a function of the run's seed and ``k`` alone, so a
resumed run draws the very batches the uninterrupted run drew.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.core.settings import Rule, check
from ptr_lightning.data.base import decode_samples, log_split_sizes
from ptr_lightning.data.images import DECODE_WORKERS_RULE, IMAGE_SIZE_RULE
from ptr_lightning.data.readers import ArchiveIndex, read_imagefolder

log = logging.getLogger(__name__)

ROOT_RULE = Rule(
    "regularizer.source_root",
    lambda v: v is not None and str(v).strip() != "",
    "the source task's image folder (<folder>/train/<class>/<image>, one class per output of "
    "the source classifier): set regularizer.source_root=<folder>, or paths.source_root=<folder> "
    "(which regularizer=joint_train reads, and a sweep over methods can set for all of them)",
    kind="any",
)


@functools.lru_cache(maxsize=2)  # a batch spans at most two passes
def stream_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``count`` images in pass ``epoch`` of the stream of run seed ``seed``
    (cached: one pass serves many steps, and permuting 1.28M images costs ~14 ms)."""
    order = np.random.default_rng([seed % 2**32, epoch]).permutation(count)
    order.flags.writeable = False  # shared by every step of the pass
    return order


class SourceImages:
    """The training images of ``root`` (an image folder), as batches of uint8 images and labels.

    The folder's index is read on first use of :attr:`index` (a missing or empty folder raises
    :class:`DatasetError` naming ``regularizer.source_root``), the images are decoded by
    :meth:`setup`. Items are ``(uint8 (3, image_size, image_size), label)`` like the target's;
    the training transform is applied on the device by whoever uses the batch.
    """

    RULES = {
        "image_size": IMAGE_SIZE_RULE,
        "decode_workers": DECODE_WORKERS_RULE,
    }

    def __init__(
        self,
        *,
        root: str | None,
        image_size: int,
        decode_workers: int = 8,
        cache_dir: str | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        ROOT_RULE.check(root)
        check(self.RULES, image_size=image_size, decode_workers=decode_workers)
        self.root = Path(str(root)).expanduser()
        self.image_size, self.decode_workers = image_size, decode_workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.skip_unreadable = skip_unreadable
        self.images: Tensor | None = None
        self.labels: Tensor | None = None

    @functools.cached_property
    def index(self) -> ArchiveIndex:
        try:
            return read_imagefolder(self.root)
        except DatasetError as err:
            raise DatasetError(
                f"regularizer.source_root={self.root}: the source task's images are not there.\n"
                f"{err}"
            ) from None

    @property
    def class_names(self) -> list[str]:
        return list(self.index.class_names)

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def setup(self) -> None:
        """Decode the training images (once; later calls return at once)."""
        if self.images is not None:
            return
        self.index.warn_left_out("source images")
        cache = None
        if self.cache_dir is not None:
            cache = self.cache_dir / f"source-{self.root.name}-train-{self.image_size}.npy"
        data, _, unreadable = decode_samples(
            self.index.train,
            size=self.image_size,
            num_workers=self.decode_workers,
            skip_unreadable=self.skip_unreadable,
            cache_file=cache,
        )
        if unreadable:
            log.warning(
                "source images: skipped %d unreadable images (dataset.skip_unreadable=true), "
                "e.g. %s",
                len(unreadable),
                [str(s.path) for s in unreadable[:3]],
            )
        if not len(data):
            raise DatasetError(f"regularizer.source_root={self.root}: no readable image")
        log_split_sizes("source images", {"train": data.labels.tolist()}, self.class_names)
        self.images, self.labels = data.images, data.labels

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """Batch ``step`` of the stream: the images at positions ``step * batch_size`` and on of
        an endless sequence of passes over the images, each pass in its own seeded order."""
        if self.images is None or self.labels is None:
            raise RuntimeError("SourceImages.setup must run before batches are drawn")
        count = len(self.labels)
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        passes = positions // count
        rows = np.empty(batch_size, dtype=np.int64)
        for epoch in np.unique(passes):
            here = passes == epoch
            rows[here] = stream_order(count, seed, int(epoch))[positions[here] % count]
        index = torch.from_numpy(rows)
        return self.images[index], self.labels[index]
