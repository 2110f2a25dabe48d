"""The CUB-200-2011 reader."""

from __future__ import annotations

import os

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data.readers.common import (
    ArchiveIndex,
    Layout,
    Sample,
    absolute,
    check_images_exist,
    read_id_table,
    require_file,
)

LAYOUT = Layout(
    name="CUB-200-2011",
    layout="""\
<root>/CUB_200_2011/      (or <root> is CUB_200_2011 itself)
    images.txt             "<image id> <class folder>/<file>"
    image_class_labels.txt "<image id> <class id>"
    train_test_split.txt   "<image id> <1 train | 0 test>"
    classes.txt            "<class id> <class folder>"
    images/<class folder>/<file>.jpg""",
    source="https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz)",
)


def read_cub200(root: str | os.PathLike[str]) -> ArchiveIndex:
    """CUB-200-2011, official train / test split, no val (samples ordered by image id).

    ``root/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt,
    images/<class folder>/<file>}``, all ids 1-based; ``root`` may also be ``CUB_200_2011``.
    The files are joined on image id, never on line position.
    """
    root = absolute(root)
    folder = root if (root / "images.txt").is_file() else root / "CUB_200_2011"
    files = {
        name: require_file(LAYOUT, folder, name)
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    }
    images = read_id_table(files["images.txt"])
    class_of = read_id_table(files["image_class_labels.txt"])
    is_train = read_id_table(files["train_test_split.txt"])
    classes = read_id_table(files["classes.txt"])

    class_ids = sorted(classes)
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise DatasetError(f"{files['classes.txt']}: class ids must be 1..N without gaps")
    train: list[Sample] = []
    test: list[Sample] = []
    for image_id in sorted(images):
        if image_id not in class_of or image_id not in is_train:
            raise DatasetError(
                f"{LAYOUT.name}: image id {image_id} of images.txt has no entry in "
                "image_class_labels.txt or train_test_split.txt"
            )
        label = int(class_of[image_id]) - 1
        if not 0 <= label < len(class_ids):
            raise DatasetError(f"{files['image_class_labels.txt']}: bad class id for {image_id}")
        sample = Sample(folder / "images" / images[image_id], label)
        (train if is_train[image_id].strip() == "1" else test).append(sample)

    index = ArchiveIndex([classes[c] for c in class_ids], train, None, test)
    return check_images_exist(LAYOUT, index, "images.txt")
