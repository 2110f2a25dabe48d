"""The CASIA-WebFace (WebFace500) reader."""

from __future__ import annotations

import os
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
    require_dir,
)

LAYOUT = Layout(
    name="CASIA-WebFace",
    layout="""\
<root>/                   (or <root>/CASIA-WebFace/)
    0000045/001.jpg ...   one folder per identity, 7-digit names
    ...""",
    source="CASIA-WebFace is available on request from its authors (Yi et al., "
    "'Learning Face Representation from Scratch', 2014; Institute of Automation, CAS)",
)


def read_webface(
    root: str | os.PathLike[str],
    *,
    identities: int = 500,
    train_per_class: int = 20,
    val_per_class: int = 5,
    split_seed: int,
) -> ArchiveIndex:
    """WebFace500: the ``identities`` identities with most images, seeded train / val / test.

    ``root/<7-digit identity>/<NNN>.jpg`` (``root`` may also hold a ``CASIA-WebFace`` folder).
    Identities are ranked by image count, ties broken by folder name; class names are the chosen
    identities' folder names, sorted. Per identity: ``train_per_class`` train,
    ``val_per_class`` val, the rest test.
    """
    integer("dataset.reader_args.identities", 1).check(identities)
    integer("dataset.reader_args.train_per_class", 1).check(train_per_class)
    integer("dataset.reader_args.val_per_class", 0).check(val_per_class)
    root = absolute(root)
    folder = root / "CASIA-WebFace" if (root / "CASIA-WebFace").is_dir() else root
    require_dir(LAYOUT, folder)
    counts = {d.name: list_images(d) for d in folder.iterdir() if d.is_dir() and d.name.isdigit()}
    ranked = most_images(counts, identities, train_per_class + val_per_class + 1, folder)
    class_names = sorted(ranked)
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    for label, name in enumerate(class_names):
        files = counts[name]
        order = class_rng("webface", split_seed, name).sample(range(len(files)), len(files))
        parts = (
            order[:train_per_class],
            order[train_per_class : train_per_class + val_per_class],
            order[train_per_class + val_per_class :],
        )
        for target, part in zip((train, val, test), parts, strict=True):
            target.extend(Sample(files[i], label) for i in sorted(part))
    return ArchiveIndex(class_names, train, val, test)


def most_images(
    counts: dict[str, list[Path]], identities: int, needed: int, folder: Path
) -> list[str]:
    """The ``identities`` identities with most images (ties by name); each needs ``needed``."""
    if not counts:
        raise not_found(LAYOUT, folder, "identity folders")
    if len(counts) < identities:
        raise InsufficientImagesError(
            f"{LAYOUT.name}: asked for {identities} identities, {folder} has {len(counts)}"
        )
    ranked = sorted(counts, key=lambda name: (-len(counts[name]), name))[:identities]
    short = [name for name in ranked if len(counts[name]) < needed]
    if short:
        raise InsufficientImagesError(
            f"{LAYOUT.name}: {len(short)} of the {identities} chosen identities have fewer than "
            f"train+val+1 = {needed} images (e.g. {short[0]} has {len(counts[short[0]])}); "
            "lower identities, train_per_class or val_per_class"
        )
    return ranked
