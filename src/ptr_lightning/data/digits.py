"""scikit-learn's handwritten digits as a few-shot transfer task that needs no download.

1797 8x8 grey images of 10 classes ship inside scikit-learn. They are upscaled to a small RGB
size, ``train_per_class`` images per class are the (few-shot) training set and the rest is
split into validation and test, all drawn with ``split_seed`` (independent of the training
seed, so several training seeds share one split). ``classes`` selects a subset (relabelled
0..k-1), e.g. digits 0-4 as a source task and 5-9 as a target task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import Rule, check, integer
from ptr_lightning.data.base import DecodedImages, InMemoryDataModule, log_split_sizes
from ptr_lightning.data.images import IMAGE_SIZE_RULE
from ptr_lightning.data.readers import VAL_FRACTION_RULE
from ptr_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def digits_images(image_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """All 1797 digits as uint8 RGB (N, 3, S, S) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # values are 0..16
    grey = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (grey.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, digits.target


def few_shot_split(
    labels: np.ndarray, *, train_per_class: int, val_fraction: float, split_seed: int
) -> dict[str, np.ndarray]:
    """Indices per split: ``train_per_class`` per class to train, the rest split val/test.

    A ``val_fraction`` so small (or large) that validation (or test) gets no image at all is
    refused: the schedule and the sweeper read validation, the protocol reads the test.
    """
    rng = np.random.default_rng(split_seed)
    splits: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        rest = idx[train_per_class:]
        n_val = int(round(val_fraction * len(rest)))
        splits["train"].append(idx[:train_per_class])
        splits["val"].append(rest[:n_val])
        splits["test"].append(rest[n_val:])
    out = {name: np.sort(np.concatenate(parts)) for name, parts in splits.items()}
    for split in ("val", "test"):
        if not len(out[split]):
            raise ConfigError(
                f"dataset.val_fraction={val_fraction} leaves the {split} split empty (it takes "
                f"that fraction of the images left after dataset.train_per_class="
                f"{train_per_class}, rounded per class); choose a value nearer 0.5"
            )
    return out


CLASSES_RULE = Rule(
    "dataset.classes",
    lambda v: len(v) >= 2 and len(set(v)) == len(v) and set(v) <= set(range(10)),
    "at least 2 different digits of 0..9, each once (a classifier needs two classes)",
    kind="any",
)


class DigitsDataModule(InMemoryDataModule):
    """Few-shot digits; items are ``(uint8 image (3, S, S), label)``."""

    RULES = {
        "image_size": IMAGE_SIZE_RULE,
        # Each digit has at least 174 images and some must remain for val/test.
        "train_per_class": integer("dataset.train_per_class", 1, 169),
        "val_fraction": VAL_FRACTION_RULE,
    }

    def __init__(
        self,
        *,
        image_size: int = 32,
        train_per_class: int = 10,
        val_fraction: float = 0.5,
        classes: Sequence[int] | None = None,
        split_seed: int = 0,
        batch_size: int = 20,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        name: str = "digits",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
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
            image_size=image_size,
            train_per_class=train_per_class,
            val_fraction=val_fraction,
        )
        self.classes = list(range(10)) if classes is None else [int(c) for c in classes]
        CLASSES_RULE.check(self.classes)
        self.image_size, self.train_per_class = image_size, train_per_class
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.class_names = [str(c) for c in self.classes]

    def setup(self, stage: str | None = None) -> None:
        if self.split_ids:
            return
        images, labels = digits_images(self.image_size)
        keep = np.isin(labels, self.classes)
        remap = {c: i for i, c in enumerate(self.classes)}
        kept = np.flatnonzero(keep)
        labels = np.array([remap[c] for c in labels[keep]])
        splits = few_shot_split(
            labels,
            train_per_class=self.train_per_class,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
        )
        log_split_sizes(
            self.name,
            {name: labels[idx].tolist() for name, idx in splits.items()},
            self.class_names,
        )
        for name, idx in splits.items():
            # Indices into scikit-learn's array, so a saved split names the exact images used.
            self.split_ids[name] = [f"digits[{i}]" for i in kept[idx]]
            data = DecodedImages(images[kept[idx]], torch.from_numpy(labels[idx]))
            setattr(self, f"{name}_dataset", data)
