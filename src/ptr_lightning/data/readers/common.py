"""What every archive reader shares: the index it returns, the errors that show the expected
layout, listing and index-file helpers, and the protocol's validation hold-out."""

from __future__ import annotations

import logging
import math
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.core.settings import fraction as fraction_rule
from ptr_lightning.data.images import readable_extensions

log = logging.getLogger(__name__)

# The share of the training images held out for validation where a data set has no val split.
VAL_FRACTION_RULE = fraction_rule("dataset.val_fraction")
MAX_LISTED_MISSING = 5


class InsufficientImagesError(DatasetError, ValueError):
    """A class has too few images for the requested split sizes."""


@dataclass(frozen=True)
class Sample:
    """One image: ``path`` is absolute, ``label`` is in ``[0, num_classes)``."""

    path: Path
    label: int


@dataclass(frozen=True)
class ArchiveIndex:
    """Class names and official splits; ``val`` is None when the data set has no official val.

    ``ignored``: files found where images were looked for but not read as images (their
    extension is not one Pillow decodes), and ``loops``: folder links not followed because
    they lead back into a folder already listed; the user hears of both.
    """

    class_names: list[str]
    train: list[Sample]
    val: list[Sample] | None
    test: list[Sample]
    ignored: tuple[Path, ...] = ()
    loops: tuple[Path, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def warn_left_out(self, name: str) -> None:
        """One warning each for :attr:`ignored` and :attr:`loops`, naming a few."""
        for paths, what in (
            (
                self.ignored,
                "ignored %d file(s) whose extension is not an image format Pillow reads",
            ),
            (
                self.loops,
                "did not follow %d folder link(s) that lead back into a folder already read "
                "(a loop)",
            ),
        ):
            if paths:
                log.warning(f"%s: {what}, e.g. %s", name, len(paths), [str(p) for p in paths[:3]])


@dataclass(frozen=True)
class Layout:
    """What an error message tells the user about a data set: its name, layout and source."""

    name: str
    layout: str
    source: str


def not_found(info: Layout, looked_in: Path, what: str) -> DatasetError:
    return DatasetError(
        f"{info.name}: {what} not found.\n"
        f"Looked in: {looked_in}\n"
        f"Expected layout:\n{indent(info.layout)}\n"
        f"Get the data from: {info.source}"
    )


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def require_file(info: Layout, folder: Path, name: str) -> Path:
    path = folder / name
    if not folder.is_dir():
        raise not_found(info, folder, "data folder")
    if not path.is_file():
        raise not_found(info, folder, f"index file {name!r}")
    return path


def require_dir(info: Layout, folder: Path, what: str = "data folder") -> Path:
    if not folder.is_dir():
        raise not_found(info, folder, what)
    return folder


def check_images_exist(info: Layout, index: ArchiveIndex, listed_in: str) -> ArchiveIndex:
    """``index``, or raise when its index files name images that are not on disk.

    Lists each parent folder once instead of stat-ing every file; that is much faster on network
    file systems.
    """
    listing: dict[Path, set[str]] = {}
    missing: list[Path] = []
    for sample in index.train + (index.val or []) + index.test:
        parent = sample.path.parent
        if parent not in listing:
            listing[parent] = set(os.listdir(parent)) if parent.is_dir() else set()
        if sample.path.name not in listing[parent]:
            missing.append(sample.path)
    if missing:
        shown = "\n".join(f"    {p}" for p in missing[:MAX_LISTED_MISSING])
        more = "" if len(missing) <= MAX_LISTED_MISSING else "\n    ..."
        raise DatasetError(
            f"{info.name}: {len(missing)} image(s) listed in {listed_in} do not exist; "
            f"first missing:\n{shown}{more}\n"
            f"The archive looks incompletely extracted; re-extract it (source: {info.source})."
        )
    return index


def read_lines(path: Path) -> list[str]:
    """Whole lines with only the line ending removed; blank lines dropped.

    File names may contain spaces and apostrophes (MIT67) and the last line may lack a newline, so
    no whitespace splitting or stripping of anything but the line ending.
    """
    with open(path, encoding="utf-8-sig", newline=None) as f:
        text = f.read()
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def read_id_table(path: Path) -> dict[int, str]:
    """``"<id> <value>"`` lines (CUB's index files) as ``{id: value}``."""
    table: dict[int, str] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
        table[int(parts[0])] = parts[1]
    return table


def is_hidden(name: str) -> bool:
    """``.ipynb_checkpoints``, ``.DS_Store``, macOS's ``._<name>`` copies: never data."""
    return name.startswith(".")


def is_image(path: Path) -> bool:
    return (
        not is_hidden(path.name) and path.suffix.lower() in readable_extensions() and path.is_file()
    )


def accepted_extensions() -> str:
    """The image extensions, for error messages."""
    return " ".join(sorted(readable_extensions()))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (no recursion, hidden ones left out), sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image(p))


def subfolders(folder: Path) -> list[Path]:
    """The folders in ``folder`` (links to folders included, hidden ones left out), sorted."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_hidden(d.name))


def walk_files(folder: Path, loops: list[Path]) -> list[Path]:
    """Every file below ``folder``, following folder links as torchvision's ImageFolder does
    (``os.walk(followlinks=True)``), hidden files and folders left out, sorted. A link back
    into a folder already walked (a loop) is not followed: it goes to ``loops``."""
    seen: set[str] = set()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            loops.append(Path(dirpath))
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        files += [Path(dirpath) / f for f in filenames if not is_hidden(f)]
    return sorted(files)


def absolute(root: str | os.PathLike[str]) -> Path:
    # absolute() rather than resolve(): keep the user's symlinks in the paths we report.
    return Path(root).expanduser().absolute()


def class_rng(kind: str, split_seed: int, key: str) -> random.Random:
    # str seeds go through SHA-512, so this is stable across processes and Python hash seeds.
    return random.Random(f"{kind}:{split_seed}:{key}")


def holdout_val(
    train: Sequence[Sample], *, fraction: float, split_seed: int
) -> tuple[list[Sample], list[Sample]]:
    """The paper's validation set for data sets without one: ``fraction`` of train, per class.

    Each class with ``n >= 2`` images gives ``round(n * fraction)`` images, but at least 1 and at
    most ``n - 1``; a single-image class stays in train. Returns ``(train, val)``, both in the
    input order; deterministic for a ``split_seed``.
    """
    VAL_FRACTION_RULE.check(fraction)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(train):
        by_class[sample.label].append(i)
    held: set[int] = set()
    for label, members in by_class.items():
        n = len(members)
        if n < 2:
            continue
        k = min(max(math.floor(n * fraction + 0.5), 1), n - 1)
        held.update(class_rng("holdout", split_seed, str(label)).sample(members, k))
    kept = [s for i, s in enumerate(train) if i not in held]
    val = [s for i, s in enumerate(train) if i in held]
    return kept, val
