"""The Caltech-256 reader."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ptr_lightning.core.settings import integer
from ptr_lightning.data.readers.common import (
    ArchiveIndex,
    InsufficientImagesError,
    Layout,
    Sample,
    absolute,
    class_rng,
    list_images,
    not_found,
)

LAYOUT = Layout(
    name="Caltech-256",
    layout="""\
<root>/caltech256/256_ObjectCategories/
    001.ak47/001_0001.jpg ...
    ...
    257.clutter/257_0001.jpg ...""",
    source="https://data.caltech.edu/records/nyy15-4j048 (256_ObjectCategories.tar; "
    "torchvision.datasets.Caltech256 extracts it into this layout)",
)


_CALTECH_FOLDER = re.compile(r"^\d{3}\.")


def read_caltech256(
    root: str | os.PathLike[str],
    *,
    train_per_class: int,
    test_per_class: int = 20,
    val_per_class: int = 5,
    include_clutter: bool,
    split_seed: int,
) -> ArchiveIndex:
    """Caltech-256, per class: ``train_per_class`` training, ``test_per_class`` test and up to
    ``val_per_class`` validation images, drawn in that order with ``split_seed``.

    The test set is balanced (the same number per class, as in the protocols the paper follows
    for Caltech-256-30/-60); the default 20 is the most that every class allows with 60
    training images, since the smallest classes have 80 images. Validation takes what is left
    after train and test, up to ``val_per_class`` (a class of 80 images with 60 + 20 gives
    none), so it never shrinks the training set; the test does not depend on it either.

    ``root/caltech256/256_ObjectCategories/NNN.name/NNN_MMMM.jpg`` (torchvision's layout; ``root``
    may also be ``caltech256`` or ``256_ObjectCategories``). Only image files directly inside a
    class folder count: the archive has a stray ``198.spider/RENAME2`` and an empty
    ``056.dog/greg/``. ``include_clutter=False`` drops ``257.clutter`` (a background class of
    827 images). Class names are the folder names.
    """
    integer("dataset.reader_args.train_per_class", 1).check(train_per_class)
    integer("dataset.reader_args.test_per_class", 1).check(test_per_class)
    integer("dataset.reader_args.val_per_class", 0).check(val_per_class)
    root = absolute(root)
    folder = _caltech_folder(root)
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and _CALTECH_FOLDER.match(d.name))
    if not include_clutter:
        class_dirs = [d for d in class_dirs if not d.name.endswith(".clutter")]
    if not class_dirs:
        raise not_found(LAYOUT, folder, "class folders (NNN.name)")

    splits: dict[str, list[Sample]] = {"train": [], "test": [], "val": []}
    for label, class_dir in enumerate(class_dirs):
        drawn = draw_class(class_dir, train_per_class, test_per_class, val_per_class, split_seed)
        for split, files in drawn.items():
            splits[split] += [Sample(path, label) for path in files]
    return ArchiveIndex([d.name for d in class_dirs], **splits)


def _caltech_folder(root: Path) -> Path:
    candidates = [root / "caltech256" / "256_ObjectCategories", root / "256_ObjectCategories"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if root.is_dir() and any(_CALTECH_FOLDER.match(p.name) for p in root.iterdir()):
        return root
    raise not_found(LAYOUT, candidates[0], "256_ObjectCategories/ folder")


def draw_class(
    class_dir: Path, train: int, test: int, val: int, split_seed: int
) -> dict[str, list[Path]]:
    """One class folder's images drawn into train, test, then up to ``val`` of the rest."""
    files = list_images(class_dir)
    if len(files) < train + test:
        raise InsufficientImagesError(
            f"{LAYOUT.name}: {class_dir} has {len(files)} images, fewer than "
            f"dataset.reader_args.train_per_class={train} + "
            f"dataset.reader_args.test_per_class={test} = {train + test}; lower one of "
            "them (every class of the full archive has at least 80 images)"
        )
    rng = class_rng("caltech256", split_seed, class_dir.name)
    rest: Sequence[int] = range(len(files))
    drawn = {}
    for split, count in (("train", train), ("test", test), ("val", val)):
        chosen = set(rng.sample(rest, min(count, len(rest))))
        drawn[split] = [files[i] for i in rest if i in chosen]
        rest = [i for i in rest if i not in chosen]
    return drawn
