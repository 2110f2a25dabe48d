"""The Flowers-102 reader."""

from __future__ import annotations

import os

import numpy as np

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data.readers.common import (
    ArchiveIndex,
    Layout,
    Sample,
    absolute,
    check_images_exist,
    require_file,
)

LAYOUT = Layout(
    name="Flowers-102",
    layout="""\
<root>/flowers-102/
    jpg/image_00001.jpg ... jpg/image_08189.jpg
    imagelabels.mat
    setid.mat""",
    source="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ "
    "(102flowers.tgz, imagelabels.mat, setid.mat; torchvision.datasets.Flowers102 "
    "downloads the same files into this layout)",
)


def read_flower102(root: str | os.PathLike[str]) -> ArchiveIndex:
    """Flowers-102 in torchvision's layout, official train / val / test.

    ``root/flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat}``; ``setid.mat`` holds
    1-based image ids in ``trnid`` / ``valid`` / ``tstid``, ``imagelabels.mat`` 1-based labels.
    ``root`` may also be the ``flowers-102`` folder itself.
    """
    from scipy.io import loadmat

    root = absolute(root)
    folder = root if (root / "setid.mat").is_file() else root / "flowers-102"
    labels_mat = require_file(LAYOUT, folder, "imagelabels.mat")
    setid_mat = require_file(LAYOUT, folder, "setid.mat")
    # squeeze_me turns a one-element array into a 0-d scalar; atleast_1d undoes that.
    labels = np.atleast_1d(loadmat(labels_mat, squeeze_me=True)["labels"]).astype(np.int64)
    setid = loadmat(setid_mat, squeeze_me=True)
    if labels.size == 0 or labels.min() < 1:
        raise DatasetError(f"{labels_mat}: labels must be 1-based, got min {labels.min()}")
    num_classes = int(labels.max())

    def split(key: str) -> list[Sample]:
        ids = np.atleast_1d(setid[key]).astype(np.int64)
        bad = ids[(ids < 1) | (ids > labels.size)]
        if bad.size:
            raise DatasetError(
                f"{setid_mat}: {key} has image ids outside 1..{labels.size}: {bad[:5].tolist()}"
            )
        return [
            Sample(folder / "jpg" / f"image_{i:05d}.jpg", int(labels[i - 1]) - 1)
            for i in ids.tolist()
        ]

    index = ArchiveIndex(
        class_names=[str(c) for c in range(1, num_classes + 1)],
        train=split("trnid"),
        val=split("valid"),
        test=split("tstid"),
    )
    return check_images_exist(LAYOUT, index, "setid.mat")
