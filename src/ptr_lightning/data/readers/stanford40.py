"""The Stanford 40 Actions reader."""

from __future__ import annotations

import os
from pathlib import Path

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
    name="Stanford 40 Actions",
    layout="""\
<root>/
    JPEGImages/<action>_<NNN>.jpg
    ImageSplits/actions.txt          header line, then "<action> <number of images>"
    ImageSplits/<action>_train.txt   one file name per line
    ImageSplits/<action>_test.txt    one file name per line""",
    source="http://vision.stanford.edu/Datasets/40actions.html "
    "(Stanford40_JPEGImages.zip, Stanford40_ImageSplits.zip)",
)


def read_stanford40(root: str | os.PathLike[str]) -> ArchiveIndex:
    """Stanford 40 Actions, ``ImageSplits/<action>_{train,test}.txt``, no val.

    ``root/JPEGImages/<action>_<NNN>.jpg``; class names in ``ImageSplits/actions.txt`` order
    (a header line, then ``<action> <count>``). Action names contain underscores, so a file's
    label is its stem up to the last underscore.
    """
    root = absolute(root)
    images = require_dir(LAYOUT, root / "JPEGImages", "JPEGImages/ folder")
    splits = root / "ImageSplits"
    actions = _stanford40_actions(require_file(LAYOUT, splits, "actions.txt"))
    label_of = {name: i for i, name in enumerate(actions)}

    def split(kind: str) -> list[Sample]:
        out: list[Sample] = []
        for action in actions:
            index_file = require_file(LAYOUT, splits, f"{action}_{kind}.txt")
            for line in read_lines(index_file):
                name = line.strip()
                stem_action = Path(name).stem.rsplit("_", 1)[0]
                if stem_action not in label_of:
                    raise DatasetError(
                        f"{index_file}: {name!r} names action {stem_action!r}, "
                        "which is not in actions.txt"
                    )
                out.append(Sample(images / name, label_of[stem_action]))
        return out

    index = ArchiveIndex(actions, split("train"), None, split("test"))
    return check_images_exist(LAYOUT, index, "ImageSplits/*_{train,test}.txt")


def _stanford40_actions(path: Path) -> list[str]:
    lines = read_lines(path)
    if lines and lines[0].split()[0] == "action_name":
        lines = lines[1:]
    actions = [line.split()[0] for line in lines]
    if not actions:
        raise DatasetError(f"{path}: no actions listed")
    return actions
