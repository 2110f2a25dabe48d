"""Downloads for the data sets whose sites allow them, through torchvision's own code.

The other data sets (CUB-200-2011, MIT Indoor-67, Stanford 40 Actions, CASIA-WebFace) are
obtained from their sites by hand; their readers' errors say where from and how to lay them out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def download_flower102(root: Path) -> None:
    """torchvision writes ``root/flowers-102/{jpg/, imagelabels.mat, setid.mat}``."""
    from torchvision.datasets import Flowers102

    Flowers102(str(root), split="train", download=True)


def download_caltech256(root: Path) -> None:
    """torchvision writes ``root/caltech256/256_ObjectCategories/``."""
    from torchvision.datasets import Caltech256

    Caltech256(str(root), download=True)


DOWNLOADS: dict[str, Callable[[Path], None]] = {
    "flower102": download_flower102,
    "caltech256": download_caltech256,
}
