"""Image decoding: the paper's 250x250 letterbox, bulk decoding and an on-disk uint8 cache.

The cache is a plain ``.npy`` file of shape ``(N, 3, size, size)`` (memory-mapped on load, so a
data set larger than RAM still works) plus a ``<cache>.json`` sidecar holding the decoded paths,
the size and the skipped indices; the cache is used only when the sidecar matches the request.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from PIL import EpsImagePlugin, Image, ImageFile
from tqdm import tqdm

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.core.settings import integer

_CACHE_VERSION = 1
_COPY_CHUNK = 256
# The side of the letterboxed images and the decoding processes, for every data set.
IMAGE_SIZE_RULE = integer("dataset.image_size", 1)
DECODE_WORKERS_RULE = integer("dataset.decode_workers", 0)


class UnreadableImageError(DatasetError):
    """An image file that is truncated, corrupt or not an image."""

    def __init__(self, path: str | os.PathLike[str], cause: BaseException | None = None) -> None:
        self.path = Path(path)
        reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(
            f"cannot decode image {self.path}{reason}. Delete or replace the file, or set "
            "dataset.skip_unreadable=true to leave unreadable images out (they are counted)."
        )


@functools.cache
def readable_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of every format Pillow decodes here.

    Pillow's own registry, less its save-only formats (PDF, Palm), its stubs (HDF5, GRIB, BUFR,
    WMF), which need a handler installed from outside Pillow, MPEG (.mpg, .mpeg: Pillow only
    reads the header) and, where Ghostscript is not installed, EPS (.eps, .ps).
    """
    registered = Image.registered_extensions()  # imports every plugin first
    undecodable = {"MPEG"} | (set() if EpsImagePlugin.has_ghostscript() else {"EPS"})

    def decodes(fmt: str) -> bool:
        if fmt not in Image.OPEN or fmt in undecodable:
            return False
        factory = Image.OPEN[fmt][0]  # a class, or a function (JPEG's)
        return not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return frozenset(ext for ext, fmt in registered.items() if decodes(fmt))


# 16-bit grayscale modes (PNG, TIFF); Pillow's "I" (32-bit) also holds 16-bit PNGs and TIFFs.
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def to_eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image scaled to 8 bits (``v / 257``: 65535 -> 255); others as given.

    Pillow's ``convert`` clips 16-bit values at 255 instead of scaling them, which turns all but
    the darkest pixels white. Mode "I" is read as 16-bit too, clipped to 0..65535.
    """
    if img.mode not in _SIXTEEN_BIT:
        return img
    values = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.rint(np.clip(values, 0, 65535) / 257).astype(np.uint8))


def letterbox(img: Image.Image, size: int = 250) -> torch.Tensor:
    """``img`` as uint8 ``(3, size, size)``: longer side scaled to ``size``, centred on black.

    Converts to RGB first (Caltech-256 has grayscale "L" and CMYK JPEGs; 16-bit images are
    scaled to 8 bits, :func:`to_eight_bit`). Resampling is PIL's bilinear, which low-pass
    filters when shrinking.
    """
    img = to_eight_bit(img).convert("RGB")
    width, height = img.size
    scale = size / max(width, height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    resized = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return torch.from_numpy(np.asarray(canvas).transpose(2, 0, 1).copy())


def load_letterboxed(path: str | os.PathLike[str], size: int = 250) -> torch.Tensor:
    """Open, fully decode and letterbox ``path``; :class:`UnreadableImageError` if it fails.

    Pillow opens a truncated JPEG (and ``verify()`` passes); it fails only when decoding, with a
    message that lacks the path, hence the wrapper around the whole decode.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return letterbox(img, size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(path, exc) from exc


def decode_all(
    paths: Sequence[Path],
    *,
    size: int = 250,
    num_workers: int = 0,
    skip_unreadable: bool = False,
    cache_file: Path | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Decode and letterbox every path: ``(uint8 (N, 3, size, size), skipped indices)``.

    Rows follow ``paths`` with the skipped ones left out; ``skipped`` is empty unless
    ``skip_unreadable``. ``num_workers > 0`` decodes in that many threads (PIL releases the GIL
    while decoding). With ``cache_file`` (a ``.npy`` path) a matching cache is memory-mapped
    instead of decoding, and a fresh decode is written there atomically; processes asking for
    the same cache at once decode it once (a file lock beside it).
    """
    keys = [str(p) for p in paths]
    if cache_file is None:
        out = np.empty((len(keys), 3, size, size), dtype=np.uint8)
        skipped = _decode_into(out, keys, size, num_workers, skip_unreadable)
        if skipped:
            out = np.delete(out, skipped, axis=0)
        return torch.from_numpy(out), skipped

    cache_file = Path(cache_file)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # One process decodes, the others (data-parallel ranks, jobs sharing a cache) wait for it
    # and memory-map its file.
    with FileLock(cache_file.with_name(cache_file.name + ".lock")):
        cached = _load_cache(cache_file, keys, size, skip_unreadable)
        if cached is not None:
            return cached
        return _decode_to_cache(cache_file, keys, size, num_workers, skip_unreadable)


def _decode_into(
    out: np.ndarray, keys: list[str], size: int, num_workers: int, skip_unreadable: bool
) -> list[int]:
    """Fill ``out[i]`` with image ``i``; returns the indices that could not be decoded."""

    def work(i: int) -> bool:
        try:
            out[i] = load_letterboxed(keys[i], size).numpy()
        except UnreadableImageError:
            if not skip_unreadable:
                raise
            return False
        return True

    # A bar on a terminal only (disable=None): no progress lines in logs or captured output.
    progress = partial(tqdm, total=len(keys), desc="decoding images", unit="img", disable=None)
    if num_workers <= 0:
        ok = [work(i) for i in progress(range(len(keys)))]
    else:
        executor = ThreadPoolExecutor(max_workers=num_workers)
        try:
            ok = list(progress(executor.map(work, range(len(keys)))))
        except BaseException:
            # Don't decode the rest of a large data set before reporting the first bad file.
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
    return [i for i, good in enumerate(ok) if not good]


def _meta_file(cache_file: Path) -> Path:
    return cache_file.with_name(cache_file.name + ".json")


def _load_cache(
    cache_file: Path, keys: list[str], size: int, skip_unreadable: bool
) -> tuple[torch.Tensor, list[int]] | None:
    meta_file = _meta_file(cache_file)
    if not (cache_file.is_file() and meta_file.is_file()):
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("version") != _CACHE_VERSION or meta.get("size") != size:
            return None
        if meta.get("paths") != keys:
            return None
        skipped = [int(i) for i in meta.get("skipped", [])]
        # A cache built while skipping must not hide unreadable files from a strict caller.
        if skipped and not skip_unreadable:
            return None
        # "c" (copy-on-write) gives a writable array, so torch does not warn, and never
        # writes back to the file.
        arr = np.load(cache_file, mmap_mode="c")
    except (OSError, ValueError):
        return None
    if arr.dtype != np.uint8 or arr.shape != (len(keys) - len(skipped), 3, size, size):
        return None
    return torch.from_numpy(arr), skipped


def _decode_to_cache(
    cache_file: Path, keys: list[str], size: int, num_workers: int, skip_unreadable: bool
) -> tuple[torch.Tensor, list[int]]:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    meta_file = _meta_file(cache_file)
    tmp = _tmp_name(cache_file)
    tmp_compact = _tmp_name(cache_file)
    try:
        full = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(keys), 3, size, size)
        )
        skipped = _decode_into(full, keys, size, num_workers, skip_unreadable)
        if skipped:
            _write_compacted(full, skipped, tmp_compact)
            del full
            os.replace(tmp_compact, tmp)
        else:
            full.flush()
            del full
        # Drop the old sidecar first: a crash after replacing the array but before writing the
        # new sidecar must not leave an old sidecar vouching for the new array.
        meta_file.unlink(missing_ok=True)
        os.replace(tmp, cache_file)
        meta = {"version": _CACHE_VERSION, "size": size, "paths": keys, "skipped": skipped}
        meta_tmp = _tmp_name(meta_file)
        meta_tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(meta_tmp, meta_file)
    finally:
        for leftover in (tmp, tmp_compact):
            leftover.unlink(missing_ok=True)
    return torch.from_numpy(np.load(cache_file, mmap_mode="c")), skipped


def _write_compacted(full: np.ndarray, skipped: list[int], dest: Path) -> None:
    keep = np.setdiff1d(np.arange(full.shape[0]), skipped)
    compact = np.lib.format.open_memmap(
        dest, mode="w+", dtype=np.uint8, shape=(len(keep), *full.shape[1:])
    )
    # Chunked so a large cache never needs to fit in memory.
    for start in range(0, len(keep), _COPY_CHUNK):
        rows = keep[start : start + _COPY_CHUNK]
        compact[start : start + len(rows)] = full[rows]
    compact.flush()
    del compact


def _tmp_name(path: Path) -> Path:
    # Unique per writer, in the same folder so os.replace is an atomic rename.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
