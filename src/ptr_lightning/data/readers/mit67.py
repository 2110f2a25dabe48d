"""The MIT Indoor-67 reader."""

from __future__ import annotations

import os

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data.readers.common import (
    ArchiveIndex,
    Layout,
    Sample,
    absolute,
    check_images_exist,
    read_lines,
    require_dir,
    require_file,
)

LAYOUT = Layout(
    name="MIT Indoor-67",
    layout="""\
<root>/
    Images/<class>/<file>.jpg
    TrainImages.txt    one "<class>/<file>" per line
    TestImages.txt     one "<class>/<file>" per line""",
    source="https://web.mit.edu/torralba/www/indoor.html "
    "(indoorCVPR_09.tar, TrainImages.txt, TestImages.txt)",
)


def read_mit67(root: str | os.PathLike[str]) -> ArchiveIndex:
    """MIT Indoor-67, ``TrainImages.txt`` / ``TestImages.txt``, no val.

    ``root/Images/<class>/<file>``; index lines are ``<class>/<file>`` (names may contain spaces
    and apostrophes, the last line has no newline). Images not named in either index file (the
    archive holds ~15k, the protocol uses 6700) are ignored. Class names sorted.
    """
    root = absolute(root)
    images = require_dir(LAYOUT, root / "Images", "Images/ folder")
    train_lines = read_lines(require_file(LAYOUT, root, "TrainImages.txt"))
    test_lines = read_lines(require_file(LAYOUT, root, "TestImages.txt"))

    class_names = sorted({_mit67_class(line) for line in train_lines + test_lines})
    label_of = {name: i for i, name in enumerate(class_names)}

    def samples(lines: list[str]) -> list[Sample]:
        return [Sample(images / line, label_of[_mit67_class(line)]) for line in lines]

    index = ArchiveIndex(class_names, samples(train_lines), None, samples(test_lines))
    return check_images_exist(LAYOUT, index, "TrainImages.txt / TestImages.txt")


def _mit67_class(line: str) -> str:
    if "/" not in line:
        raise DatasetError(f"{LAYOUT.name}: index line {line!r} is not '<class>/<file>'")
    return line.split("/", 1)[0]
