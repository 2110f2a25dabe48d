"""The your own image folders reader."""

from __future__ import annotations

import os
from pathlib import Path

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data.readers.common import (
    ArchiveIndex,
    Layout,
    Sample,
    absolute,
    accepted_extensions,
    is_image,
    not_found,
    require_dir,
    subfolders,
    walk_files,
)

LAYOUT = Layout(
    name="image folder",
    layout="""\
<root>/
    train/<class>/<image>    required; defines the class list
    val/<class>/<image>      optional
    test/<class>/<image>     optional""",
    source="your own data",
)


def read_imagefolder(root: str | os.PathLike[str]) -> ArchiveIndex:
    """The user's own data: ``root/train/<class>/*``, optional ``val/`` and ``test/``.

    Class names are ``train``'s sub-folders, sorted; images are found recursively inside each
    class folder, following folder links (like torchvision's ImageFolder; a link that loops
    back is listed in ``loops``, not followed): every file with an extension Pillow decodes
    (:func:`~ptr_lightning.data.images.readable_extensions`); other files are listed in
    ``ignored``. Hidden files and folders (``.*``, macOS's ``._*``) are no data and skipped.
    A ``val`` or ``test`` class folder missing from ``train`` is an error, and so is a ``val``
    folder without images; a missing ``test`` folder gives an empty test list.
    """
    root = absolute(root)
    train_dir = require_dir(LAYOUT, root / "train", "train/ folder")
    class_names = [d.name for d in subfolders(train_dir)]
    if not class_names:
        raise not_found(LAYOUT, train_dir, "class folders")
    label_of = {name: i for i, name in enumerate(class_names)}
    ignored: list[Path] = []
    loops: list[Path] = []
    train = _imagefolder_split(train_dir, label_of, ignored, loops)
    empty = sorted(set(class_names) - {class_names[s.label] for s in train})
    if empty:
        raise DatasetError(
            f"{LAYOUT.name}: train class folder(s) without images: {empty} (under "
            f"{train_dir}). Images are files with one of these extensions: "
            f"{accepted_extensions()}"
        )
    val = None
    if (root / "val").is_dir():
        val = _imagefolder_split(root / "val", label_of, ignored, loops)
        if not val:
            raise DatasetError(
                f"{LAYOUT.name}: dataset.root={root} has a val/ folder without images. Put "
                "images in val/<class>/, or delete val/ to hold out dataset.val_fraction of the "
                f"training images. Images are files with one of these extensions: "
                f"{accepted_extensions()}"
            )
    test = []
    if (root / "test").is_dir():
        test = _imagefolder_split(root / "test", label_of, ignored, loops)
    return ArchiveIndex(class_names, train, val, test, ignored=tuple(ignored), loops=tuple(loops))


def _imagefolder_split(
    folder: Path, label_of: dict[str, int], ignored: list[Path], loops: list[Path]
) -> list[Sample]:
    class_dirs = subfolders(folder)
    unknown = [d.name for d in class_dirs if d.name not in label_of]
    if unknown:
        raise DatasetError(
            f"{LAYOUT.name}: {folder} has class folder(s) {unknown} that are not in "
            f"{folder.parent / 'train'}; every class needs training images"
        )
    samples = []
    for class_dir in class_dirs:
        for path in walk_files(class_dir, loops):
            if is_image(path):
                samples.append(Sample(path, label_of[class_dir.name]))
            else:
                ignored.append(path)
    return samples
