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

import math
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptr_lightning.data.images import readable_extensions
from ptr_lightning.errors import DatasetError
from ptr_lightning.settings import fraction as fraction_rule
from ptr_lightning.settings import integer

# The share of the training images held out for validation where a data set has no val split.
VAL_FRACTION_RULE = fraction_rule("dataset.val_fraction")
_MAX_LISTED_MISSING = 5


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
    extension is not one Pillow decodes), so that the user hears of them.
    """

    class_names: list[str]
    train: list[Sample]
    val: list[Sample] | None
    test: list[Sample]
    ignored: tuple[Path, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class _Info:
    """What an error message tells the user about a data set."""

    name: str
    layout: str
    source: str


FLOWER102 = _Info(
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
CUB200 = _Info(
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
MIT67 = _Info(
    name="MIT Indoor-67",
    layout="""\
<root>/
    Images/<class>/<file>.jpg
    TrainImages.txt    one "<class>/<file>" per line
    TestImages.txt     one "<class>/<file>" per line""",
    source="https://web.mit.edu/torralba/www/indoor.html "
    "(indoorCVPR_09.tar, TrainImages.txt, TestImages.txt)",
)
STANFORD40 = _Info(
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
CALTECH256 = _Info(
    name="Caltech-256",
    layout="""\
<root>/caltech256/256_ObjectCategories/
    001.ak47/001_0001.jpg ...
    ...
    257.clutter/257_0001.jpg ...""",
    source="https://data.caltech.edu/records/nyy15-4j048 (256_ObjectCategories.tar; "
    "torchvision.datasets.Caltech256 extracts it into this layout)",
)
WEBFACE = _Info(
    name="CASIA-WebFace",
    layout="""\
<root>/                   (or <root>/CASIA-WebFace/)
    0000045/001.jpg ...   one folder per identity, 7-digit names
    ...""",
    source="CASIA-WebFace is available on request from its authors (Yi et al., "
    "'Learning Face Representation from Scratch', 2014; Institute of Automation, CAS)",
)
IMAGEFOLDER = _Info(
    name="image folder",
    layout="""\
<root>/
    train/<class>/<image>    required; defines the class list
    val/<class>/<image>      optional
    test/<class>/<image>     optional""",
    source="your own data",
)


def _not_found(info: _Info, looked_in: Path, what: str) -> DatasetError:
    return DatasetError(
        f"{info.name}: {what} not found.\n"
        f"Looked in: {looked_in}\n"
        f"Expected layout:\n{_indent(info.layout)}\n"
        f"Get the data from: {info.source}"
    )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _require_file(info: _Info, folder: Path, name: str) -> Path:
    path = folder / name
    if not folder.is_dir():
        raise _not_found(info, folder, "data folder")
    if not path.is_file():
        raise _not_found(info, folder, f"index file {name!r}")
    return path


def _require_dir(info: _Info, folder: Path, what: str = "data folder") -> Path:
    if not folder.is_dir():
        raise _not_found(info, folder, what)
    return folder


def _check_images_exist(info: _Info, samples: Iterable[Sample], listed_in: str) -> None:
    """Raise when an index file names images that are not on disk.

    Lists each parent folder once instead of stat-ing every file; that is much faster on network
    file systems.
    """
    listing: dict[Path, set[str]] = {}
    missing: list[Path] = []
    for sample in samples:
        parent = sample.path.parent
        if parent not in listing:
            listing[parent] = set(os.listdir(parent)) if parent.is_dir() else set()
        if sample.path.name not in listing[parent]:
            missing.append(sample.path)
    if missing:
        shown = "\n".join(f"    {p}" for p in missing[:_MAX_LISTED_MISSING])
        more = "" if len(missing) <= _MAX_LISTED_MISSING else "\n    ..."
        raise DatasetError(
            f"{info.name}: {len(missing)} image(s) listed in {listed_in} do not exist; "
            f"first missing:\n{shown}{more}\n"
            f"The archive looks incompletely extracted; re-extract it (source: {info.source})."
        )


def _read_lines(path: Path) -> list[str]:
    """Whole lines with only the line ending removed; blank lines dropped.

    File names may contain spaces and apostrophes (MIT67) and the last line may lack a newline, so
    no whitespace splitting or stripping of anything but the line ending.
    """
    with open(path, encoding="utf-8-sig", newline=None) as f:
        text = f.read()
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def _read_id_table(path: Path) -> dict[int, str]:
    """``"<id> <value>"`` lines (CUB's index files) as ``{id: value}``."""
    table: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
        table[int(parts[0])] = parts[1]
    return table


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in readable_extensions() and path.is_file()


def accepted_extensions() -> str:
    """The image extensions, for error messages."""
    return " ".join(sorted(readable_extensions()))


def _list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (no recursion), sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _absolute(root: str | os.PathLike[str]) -> Path:
    # absolute() rather than resolve(): keep the user's symlinks in the paths we report.
    return Path(root).expanduser().absolute()


def _class_rng(kind: str, split_seed: int, key: str) -> random.Random:
    # str seeds go through SHA-512, so this is stable across processes and Python hash seeds.
    return random.Random(f"{kind}:{split_seed}:{key}")


# --- Flowers-102 ---------------------------------------------------------------------------


def read_flower102(root: str | os.PathLike[str]) -> ArchiveIndex:
    """Flowers-102 in torchvision's layout, official train / val / test.

    ``root/flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat}``; ``setid.mat`` holds
    1-based image ids in ``trnid`` / ``valid`` / ``tstid``, ``imagelabels.mat`` 1-based labels.
    ``root`` may also be the ``flowers-102`` folder itself.
    """
    from scipy.io import loadmat

    root = _absolute(root)
    folder = root if (root / "setid.mat").is_file() else root / "flowers-102"
    labels_mat = _require_file(FLOWER102, folder, "imagelabels.mat")
    setid_mat = _require_file(FLOWER102, folder, "setid.mat")
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
    _check_images_exist(FLOWER102, _all_samples(index), "setid.mat")
    return index


def _all_samples(index: ArchiveIndex) -> list[Sample]:
    return index.train + (index.val or []) + index.test


# --- CUB-200-2011 --------------------------------------------------------------------------


def read_cub200(root: str | os.PathLike[str]) -> ArchiveIndex:
    """CUB-200-2011, official train / test split, no val (samples ordered by image id).

    ``root/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt,
    images/<class folder>/<file>}``, all ids 1-based; ``root`` may also be ``CUB_200_2011``.
    The files are joined on image id, never on line position.
    """
    root = _absolute(root)
    folder = root if (root / "images.txt").is_file() else root / "CUB_200_2011"
    files = {
        name: _require_file(CUB200, folder, name)
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    }
    images = _read_id_table(files["images.txt"])
    class_of = _read_id_table(files["image_class_labels.txt"])
    is_train = _read_id_table(files["train_test_split.txt"])
    classes = _read_id_table(files["classes.txt"])

    class_ids = sorted(classes)
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise DatasetError(f"{files['classes.txt']}: class ids must be 1..N without gaps")
    train: list[Sample] = []
    test: list[Sample] = []
    for image_id in sorted(images):
        if image_id not in class_of or image_id not in is_train:
            raise DatasetError(
                f"{CUB200.name}: image id {image_id} of images.txt has no entry in "
                "image_class_labels.txt or train_test_split.txt"
            )
        label = int(class_of[image_id]) - 1
        if not 0 <= label < len(class_ids):
            raise DatasetError(f"{files['image_class_labels.txt']}: bad class id for {image_id}")
        sample = Sample(folder / "images" / images[image_id], label)
        (train if is_train[image_id].strip() == "1" else test).append(sample)

    index = ArchiveIndex([classes[c] for c in class_ids], train, None, test)
    _check_images_exist(CUB200, _all_samples(index), "images.txt")
    return index


# --- MIT Indoor-67 -------------------------------------------------------------------------


def read_mit67(root: str | os.PathLike[str]) -> ArchiveIndex:
    """MIT Indoor-67, ``TrainImages.txt`` / ``TestImages.txt``, no val.

    ``root/Images/<class>/<file>``; index lines are ``<class>/<file>`` (names may contain spaces
    and apostrophes, the last line has no newline). Images not named in either index file (the
    archive holds ~15k, the protocol uses 6700) are ignored. Class names sorted.
    """
    root = _absolute(root)
    images = _require_dir(MIT67, root / "Images", "Images/ folder")
    train_lines = _read_lines(_require_file(MIT67, root, "TrainImages.txt"))
    test_lines = _read_lines(_require_file(MIT67, root, "TestImages.txt"))

    class_names = sorted({_mit67_class(line) for line in train_lines + test_lines})
    label_of = {name: i for i, name in enumerate(class_names)}

    def samples(lines: list[str]) -> list[Sample]:
        return [Sample(images / line, label_of[_mit67_class(line)]) for line in lines]

    index = ArchiveIndex(class_names, samples(train_lines), None, samples(test_lines))
    _check_images_exist(MIT67, _all_samples(index), "TrainImages.txt / TestImages.txt")
    return index


def _mit67_class(line: str) -> str:
    if "/" not in line:
        raise DatasetError(f"{MIT67.name}: index line {line!r} is not '<class>/<file>'")
    return line.split("/", 1)[0]


# --- Stanford 40 Actions -------------------------------------------------------------------


def read_stanford40(root: str | os.PathLike[str]) -> ArchiveIndex:
    """Stanford 40 Actions, ``ImageSplits/<action>_{train,test}.txt``, no val.

    ``root/JPEGImages/<action>_<NNN>.jpg``; class names in ``ImageSplits/actions.txt`` order
    (a header line, then ``<action> <count>``). Action names contain underscores, so a file's
    label is its stem up to the last underscore.
    """
    root = _absolute(root)
    images = _require_dir(STANFORD40, root / "JPEGImages", "JPEGImages/ folder")
    splits = root / "ImageSplits"
    actions = _stanford40_actions(_require_file(STANFORD40, splits, "actions.txt"))
    label_of = {name: i for i, name in enumerate(actions)}

    def split(kind: str) -> list[Sample]:
        out: list[Sample] = []
        for action in actions:
            index_file = _require_file(STANFORD40, splits, f"{action}_{kind}.txt")
            for line in _read_lines(index_file):
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
    _check_images_exist(STANFORD40, _all_samples(index), "ImageSplits/*_{train,test}.txt")
    return index


def _stanford40_actions(path: Path) -> list[str]:
    lines = _read_lines(path)
    if lines and lines[0].split()[0] == "action_name":
        lines = lines[1:]
    actions = [line.split()[0] for line in lines]
    if not actions:
        raise DatasetError(f"{path}: no actions listed")
    return actions


# --- Caltech-256 ---------------------------------------------------------------------------

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
    root = _absolute(root)
    folder = _caltech_folder(root)
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and _CALTECH_FOLDER.match(d.name))
    if not include_clutter:
        class_dirs = [d for d in class_dirs if not d.name.endswith(".clutter")]
    if not class_dirs:
        raise _not_found(CALTECH256, folder, "class folders (NNN.name)")

    needed = train_per_class + test_per_class
    splits: dict[str, list[Sample]] = {"train": [], "test": [], "val": []}
    for label, class_dir in enumerate(class_dirs):
        files = _list_images(class_dir)
        if len(files) < needed:
            raise InsufficientImagesError(
                f"{CALTECH256.name}: {class_dir} has {len(files)} images, fewer than "
                f"dataset.reader_args.train_per_class={train_per_class} + "
                f"dataset.reader_args.test_per_class={test_per_class} = {needed}; lower one of "
                "them (every class of the full archive has at least 80 images)"
            )
        rng = _class_rng("caltech256", split_seed, class_dir.name)
        rest = range(len(files))
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            chosen = set(rng.sample(rest, count))
            splits[split] += [Sample(files[i], label) for i in rest if i in chosen]
            rest = [i for i in rest if i not in chosen]
        chosen = set(rng.sample(rest, min(val_per_class, len(rest))))
        splits["val"] += [Sample(files[i], label) for i in rest if i in chosen]
    return ArchiveIndex([d.name for d in class_dirs], **splits)


def _caltech_folder(root: Path) -> Path:
    candidates = [root / "caltech256" / "256_ObjectCategories", root / "256_ObjectCategories"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if root.is_dir() and any(_CALTECH_FOLDER.match(p.name) for p in root.iterdir()):
        return root
    raise _not_found(CALTECH256, candidates[0], "256_ObjectCategories/ folder")


# --- CASIA-WebFace -------------------------------------------------------------------------


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
    root = _absolute(root)
    folder = root / "CASIA-WebFace" if (root / "CASIA-WebFace").is_dir() else root
    _require_dir(WEBFACE, folder)
    counts = {d.name: _list_images(d) for d in folder.iterdir() if d.is_dir() and d.name.isdigit()}
    if not counts:
        raise _not_found(WEBFACE, folder, "identity folders")
    if len(counts) < identities:
        raise InsufficientImagesError(
            f"{WEBFACE.name}: asked for {identities} identities, {folder} has {len(counts)}"
        )
    ranked = sorted(counts, key=lambda name: (-len(counts[name]), name))[:identities]
    needed = train_per_class + val_per_class + 1
    short = [name for name in ranked if len(counts[name]) < needed]
    if short:
        raise InsufficientImagesError(
            f"{WEBFACE.name}: {len(short)} of the {identities} chosen identities have fewer than "
            f"train+val+1 = {needed} images (e.g. {short[0]} has {len(counts[short[0]])}); "
            "lower identities, train_per_class or val_per_class"
        )

    class_names = sorted(ranked)
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    for label, name in enumerate(class_names):
        files = counts[name]
        order = _class_rng("webface", split_seed, name).sample(range(len(files)), len(files))
        parts = (
            order[:train_per_class],
            order[train_per_class : train_per_class + val_per_class],
            order[train_per_class + val_per_class :],
        )
        for target, part in zip((train, val, test), parts, strict=True):
            target.extend(Sample(files[i], label) for i in sorted(part))
    return ArchiveIndex(class_names, train, val, test)


# --- user's image folders ------------------------------------------------------------------


def read_imagefolder(root: str | os.PathLike[str]) -> ArchiveIndex:
    """The user's own data: ``root/train/<class>/*``, optional ``val/`` and ``test/``.

    Class names are ``train``'s sub-folders, sorted; images are found recursively inside each
    class folder (like torchvision's ImageFolder): every file with an extension Pillow decodes
    (:func:`~ptr_lightning.data.images.readable_extensions`); other files are listed in
    ``ignored``. A ``val`` or ``test`` class folder missing from ``train`` is an error, and so
    is a ``val`` folder without images; a missing ``test`` folder gives an empty test list.
    """
    root = _absolute(root)
    train_dir = _require_dir(IMAGEFOLDER, root / "train", "train/ folder")
    class_names = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not class_names:
        raise _not_found(IMAGEFOLDER, train_dir, "class folders")
    label_of = {name: i for i, name in enumerate(class_names)}
    ignored: list[Path] = []
    train = _imagefolder_split(train_dir, label_of, ignored)
    empty = sorted(set(class_names) - {class_names[s.label] for s in train})
    if empty:
        raise DatasetError(
            f"{IMAGEFOLDER.name}: train class folder(s) without images: {empty} (under "
            f"{train_dir}). Images are files with one of these extensions: "
            f"{accepted_extensions()}"
        )
    val = None
    if (root / "val").is_dir():
        val = _imagefolder_split(root / "val", label_of, ignored)
        if not val:
            raise DatasetError(
                f"{IMAGEFOLDER.name}: dataset.root={root} has a val/ folder without images. Put "
                "images in val/<class>/, or delete val/ to hold out dataset.val_fraction of the "
                f"training images. Images are files with one of these extensions: "
                f"{accepted_extensions()}"
            )
    test = []
    if (root / "test").is_dir():
        test = _imagefolder_split(root / "test", label_of, ignored)
    return ArchiveIndex(class_names, train, val, test, ignored=tuple(ignored))


def _imagefolder_split(folder: Path, label_of: dict[str, int], ignored: list[Path]) -> list[Sample]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir())
    unknown = [d.name for d in class_dirs if d.name not in label_of]
    if unknown:
        raise DatasetError(
            f"{IMAGEFOLDER.name}: {folder} has class folder(s) {unknown} that are not in "
            f"{folder.parent / 'train'}; every class needs training images"
        )
    samples = []
    for class_dir in class_dirs:
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if _is_image(path):
                samples.append(Sample(path, label_of[class_dir.name]))
            else:
                ignored.append(path)
    return samples


# --- validation hold-out -------------------------------------------------------------------


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
        held.update(_class_rng("holdout", split_seed, str(label)).sample(members, k))
    kept = [s for i, s in enumerate(train) if i not in held]
    val = [s for i, s in enumerate(train) if i in held]
    return kept, val


READERS: dict[str, Callable[..., ArchiveIndex]] = {
    "flower102": read_flower102,
    "cub200": read_cub200,
    "mit67": read_mit67,
    "stanford40": read_stanford40,
    "caltech256": read_caltech256,
    "webface": read_webface,
    "imagefolder": read_imagefolder,
}
