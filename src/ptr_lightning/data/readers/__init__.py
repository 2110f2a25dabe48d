"""Readers for each data set's official archive layout, and the protocol's split rules.

Every reader takes the folder the user passes as ``dataset.root`` and returns an
:class:`ArchiveIndex`: class names plus ``(path, label)`` lists for the official splits. Nothing
here decodes an image or imports Lightning; readers only read index files and list folders, so
they run in well under a second even on the full archives.

Splits that the paper draws at random (Caltech-256, WebFace, the 10% validation hold-out) are
seeded per class with a string seed, so a class's split depends only on the seed and that class,
never on which other classes are present or on the process's hash seed.
"""

from __future__ import annotations

from collections.abc import Callable

from ptr_lightning.data.readers.caltech256 import read_caltech256
from ptr_lightning.data.readers.common import (
    VAL_FRACTION_RULE,
    ArchiveIndex,
    InsufficientImagesError,
    Sample,
    holdout_val,
)
from ptr_lightning.data.readers.cub200 import read_cub200
from ptr_lightning.data.readers.flower102 import read_flower102
from ptr_lightning.data.readers.imagefolder import read_imagefolder
from ptr_lightning.data.readers.mit67 import read_mit67
from ptr_lightning.data.readers.stanford40 import read_stanford40
from ptr_lightning.data.readers.webface import read_webface

# dataset.reader: the folder a data set is read from -> its index.
READERS: dict[str, Callable[..., ArchiveIndex]] = {
    "flower102": read_flower102,
    "cub200": read_cub200,
    "mit67": read_mit67,
    "stanford40": read_stanford40,
    "caltech256": read_caltech256,
    "webface": read_webface,
    "imagefolder": read_imagefolder,
}

__all__ = [
    "READERS",
    "VAL_FRACTION_RULE",
    "ArchiveIndex",
    "InsufficientImagesError",
    "Sample",
    "holdout_val",
    "read_caltech256",
    "read_cub200",
    "read_flower102",
    "read_imagefolder",
    "read_mit67",
    "read_stanford40",
    "read_webface",
]
