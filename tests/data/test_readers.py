"""Archive readers, split rules and image decoding, on synthetic archives in the real layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data import images
from ptr_lightning.data.images import (
    UnreadableImageError,
    decode_all,
    letterbox,
    load_letterboxed,
)
from ptr_lightning.data.readers import (
    READERS,
    ArchiveIndex,
    InsufficientImagesError,
    Sample,
    holdout_val,
    read_caltech256,
    read_cub200,
    read_flower102,
    read_imagefolder,
    read_mit67,
    read_stanford40,
    read_webface,
)
from tests.fixtures.archives import (
    CALTECH_CLASSES,
    WEBFACE_COUNTS,
    Fixture,
    make_caltech256,
    make_cub200,
    make_flower102,
    make_imagefolder,
    make_mit67,
    make_stanford40,
    make_webface,
    write_image,
    write_jpeg,
    write_truncated_jpeg,
)


def rel(samples: list[Sample] | None, root: Path) -> list[str]:
    assert samples is not None
    return [s.path.relative_to(root).as_posix() for s in samples]


def assert_matches_fixture(index: ArchiveIndex, fx: Fixture) -> None:
    """Class names, per-split paths in order, and every label as the index files say."""
    assert index.class_names == fx.class_names
    assert fx.splits is not None
    for split, expected in fx.splits.items():
        samples = getattr(index, split)
        assert rel(samples, fx.root) == expected, split
        for s in samples:
            assert s.path.is_absolute()
            assert 0 <= s.label < index.num_classes
            assert s.label == fx.labels[s.path.relative_to(fx.root).as_posix()]


def assert_error_mentions(exc: BaseException, *parts: str) -> None:
    message = str(exc)
    for part in parts:
        assert part in message, f"{part!r} not in:\n{message}"


# --- Flowers-102 ---------------------------------------------------------------------------


def test_flower102_official_splits(tmp_path: Path) -> None:
    fx = make_flower102(tmp_path)
    index = read_flower102(tmp_path)
    assert_matches_fixture(index, fx)
    assert fx.counts() == {"train": 5, "val": 1, "test": 6}
    # image_00001 has 1-based label 2.
    assert index.test[0] == Sample(tmp_path / "flowers-102/jpg/image_00001.jpg", 1)
    # The single-element val split comes back as a list, not a scalar.
    assert index.val == [Sample(tmp_path / "flowers-102/jpg/image_00004.jpg", 0)]


def test_flower102_accepts_inner_folder(tmp_path: Path) -> None:
    make_flower102(tmp_path)
    assert read_flower102(tmp_path / "flowers-102") == read_flower102(tmp_path)


def test_flower102_missing_root_explains_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        read_flower102(missing)
    assert_error_mentions(
        err.value,
        "Flowers-102",
        str(missing / "flowers-102"),
        "imagelabels.mat",
        "setid.mat",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
    )


def test_flower102_missing_index_file(tmp_path: Path) -> None:
    make_flower102(tmp_path)
    (tmp_path / "flowers-102" / "setid.mat").unlink()
    with pytest.raises(DatasetError) as err:
        read_flower102(tmp_path)
    assert_error_mentions(err.value, "'setid.mat'", str(tmp_path / "flowers-102"), "jpg/")


def test_flower102_missing_images_listed(tmp_path: Path) -> None:
    make_flower102(tmp_path)
    for i in (2, 3):
        (tmp_path / f"flowers-102/jpg/image_{i:05d}.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        read_flower102(tmp_path)
    assert_error_mentions(err.value, "2 image(s)", "image_00002.jpg", "image_00003.jpg")


# --- CUB-200-2011 --------------------------------------------------------------------------


def test_cub200_splits_joined_on_id(tmp_path: Path) -> None:
    fx = make_cub200(tmp_path)
    index = read_cub200(tmp_path)
    assert_matches_fixture(index, fx)
    assert index.val is None
    assert len(index.train) == 8 and len(index.test) == 4
    laysan = tmp_path / "CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0000_100.jpg"
    assert [s.label for s in index.train + index.test if s.path == laysan] == [1]


def test_cub200_root_may_be_inner_folder(tmp_path: Path) -> None:
    make_cub200(tmp_path)
    assert read_cub200(tmp_path / "CUB_200_2011") == read_cub200(tmp_path)


def test_cub200_missing_root_and_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_cub200(tmp_path / "nope")
    assert_error_mentions(
        err.value,
        "CUB-200-2011",
        str(tmp_path / "nope" / "CUB_200_2011"),
        "train_test_split.txt",
        "https://www.vision.caltech.edu/datasets/cub_200_2011/",
    )
    make_cub200(tmp_path)
    images_dir = tmp_path / "CUB_200_2011" / "images"
    all_files = sorted(images_dir.rglob("*.jpg"))
    for path in all_files[:7]:
        path.unlink()
    with pytest.raises(DatasetError) as err:
        read_cub200(tmp_path)
    message = str(err.value)
    assert "7 image(s)" in message
    assert sum(str(p) in message for p in all_files[:7]) == 5  # only the first five listed


# --- MIT Indoor-67 -------------------------------------------------------------------------


def test_mit67_names_with_spaces_and_apostrophes(tmp_path: Path) -> None:
    fx = make_mit67(tmp_path)
    assert not (tmp_path / "TrainImages.txt").read_text().endswith("\n")
    index = read_mit67(tmp_path)
    assert_matches_fixture(index, fx)
    assert index.val is None
    train_paths = {s.path for s in index.train}
    assert tmp_path / "Images/mall/shopping mall.jpg" in train_paths
    assert tmp_path / "Images/bar/o'neill's pub.jpg" in train_paths
    assert tmp_path / "Images/mall/mall 0003 .jpg" in train_paths  # trailing space kept
    listed = {s.path for s in index.train + index.test}
    assert not listed & {tmp_path / p for p in fx.extra["unlisted"]}  # type: ignore[union-attr]


def test_mit67_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_mit67(tmp_path / "indoor")
    assert_error_mentions(
        err.value,
        "MIT Indoor-67",
        str(tmp_path / "indoor"),
        "TrainImages.txt",
        "https://web.mit.edu/torralba/www/indoor.html",
    )
    make_mit67(tmp_path)
    (tmp_path / "Images/mall/shopping mall.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        read_mit67(tmp_path)
    assert_error_mentions(err.value, "1 image(s)", "shopping mall.jpg")


# --- Stanford 40 Actions -------------------------------------------------------------------


def test_stanford40_underscore_actions(tmp_path: Path) -> None:
    fx = make_stanford40(tmp_path)
    index = read_stanford40(tmp_path)
    assert_matches_fixture(index, fx)
    assert index.class_names == ["applauding", "blowing_bubbles", "brushing_teeth"]
    assert Counter(s.label for s in index.train) == {0: 3, 1: 2, 2: 3}
    assert Counter(s.label for s in index.test) == {0: 2, 1: 3, 2: 3}
    sample = next(s for s in index.test if s.path.name == "blowing_bubbles_005.jpg")
    assert sample.label == 1


def test_stanford40_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_stanford40(tmp_path)
    assert_error_mentions(
        err.value,
        "Stanford 40",
        str(tmp_path / "JPEGImages"),
        "actions.txt",
        "http://vision.stanford.edu/Datasets/40actions.html",
    )
    make_stanford40(tmp_path)
    (tmp_path / "ImageSplits/brushing_teeth_test.txt").unlink()
    with pytest.raises(DatasetError, match="brushing_teeth_test.txt"):
        read_stanford40(tmp_path)


# --- Caltech-256 ---------------------------------------------------------------------------


def read_caltech(root: Path, **args: object) -> ArchiveIndex:
    """The fixture's Caltech-256 with small per-class counts (3 train, 2 test, up to 2 val)."""
    defaults: dict[str, object] = dict(
        train_per_class=3, test_per_class=2, val_per_class=2, include_clutter=True, split_seed=0
    )
    return read_caltech256(root, **{**defaults, **args})


def per_class(samples: list[Sample] | None) -> dict[int, int]:
    assert samples is not None
    return dict(Counter(s.label for s in samples))


def test_caltech256_balanced_test_and_validation_from_what_is_left(tmp_path: Path) -> None:
    fx = make_caltech256(tmp_path)
    index = read_caltech(tmp_path)
    assert index.class_names == list(CALTECH_CLASSES)
    assert per_class(index.train) == dict.fromkeys(range(5), 3)
    assert per_class(index.test) == dict.fromkeys(range(5), 2)  # balanced
    # Validation is not taken from the training images: up to 2 of what train and test left
    # (6, 7, 6, 8, 6 images -> 1, 2, 1, 3, 1 left).
    assert per_class(index.val) == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1}
    splits = [rel(index.train, tmp_path), rel(index.test, tmp_path), rel(index.val, tmp_path)]
    everything = [path for split in splits for path in split]
    assert len(set(everything)) == len(everything)  # disjoint
    assert set(everything) <= set(fx.labels)  # no RENAME2, nothing from greg/
    for s in index.train + index.test + index.val:
        assert s.label == fx.labels[s.path.relative_to(tmp_path).as_posix()]


def test_caltech256_each_split_independent_of_the_later_ones(tmp_path: Path) -> None:
    make_caltech256(tmp_path)
    base = read_caltech(tmp_path)
    # The test does not change with the validation size; training does not change with either.
    assert read_caltech(tmp_path, val_per_class=0).test == base.test
    assert read_caltech(tmp_path, val_per_class=0).val == []
    assert read_caltech(tmp_path, test_per_class=1).train == base.train


def test_caltech256_clutter(tmp_path: Path) -> None:
    make_caltech256(tmp_path)
    index = read_caltech(tmp_path)
    no_clutter = read_caltech(tmp_path, include_clutter=False)
    assert no_clutter.class_names == list(CALTECH_CLASSES)[:4]
    assert all(".clutter" not in str(s.path) for s in no_clutter.train + no_clutter.test)
    # A class's split depends on the seed and the class only, not on clutter being present.
    assert no_clutter.train == [s for s in index.train if s.label < 4]
    assert no_clutter.test == [s for s in index.test if s.label < 4]


def test_caltech256_seeded(tmp_path: Path) -> None:
    make_caltech256(tmp_path)
    assert read_caltech(tmp_path, split_seed=0) == read_caltech(tmp_path, split_seed=0)
    assert read_caltech(tmp_path, split_seed=0).train != read_caltech(tmp_path, split_seed=1).train


def test_caltech256_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_caltech(tmp_path / "x")
    assert_error_mentions(
        err.value,
        "Caltech-256",
        "256_ObjectCategories",
        "257.clutter",
        "https://data.caltech.edu/records/nyy15-4j048",
    )
    make_caltech256(tmp_path)
    with pytest.raises(InsufficientImagesError) as err:
        read_caltech(tmp_path, train_per_class=3, test_per_class=4)  # 001.ak47 has 6
    assert_error_mentions(
        err.value,
        "001.ak47 has 6 images",
        "dataset.reader_args.train_per_class=3",
        "dataset.reader_args.test_per_class=4",
    )


# --- CASIA-WebFace -------------------------------------------------------------------------


def test_webface_top_identities(tmp_path: Path) -> None:
    make_webface(tmp_path)
    index = read_webface(tmp_path, identities=4, train_per_class=3, val_per_class=2, split_seed=0)
    # 10, 9, 8 images, then a tie at 7 broken by folder name (0000099 before 0000102).
    assert index.class_names == ["0000045", "0000099", "0000100", "0000113"]
    assert index.val is not None
    for label, name in enumerate(index.class_names):
        train = [s for s in index.train if s.label == label]
        val = [s for s in index.val if s.label == label]
        test = [s for s in index.test if s.label == label]
        assert (len(train), len(val), len(test)) == (3, 2, WEBFACE_COUNTS[name] - 5)
        paths = {s.path for s in train + val + test}
        assert paths == set((tmp_path / name).glob("*.jpg"))


def test_webface_seeded(tmp_path: Path) -> None:
    make_webface(tmp_path)

    def read(seed: int) -> ArchiveIndex:
        return read_webface(
            tmp_path, identities=3, train_per_class=3, val_per_class=2, split_seed=seed
        )

    assert read(5) == read(5)
    assert read(5).train != read(6).train


def test_webface_too_few_images(tmp_path: Path) -> None:
    make_webface(tmp_path)
    with pytest.raises(ValueError, match="fewer than train\\+val\\+1 = 8"):
        read_webface(tmp_path, identities=4, train_per_class=5, val_per_class=2, split_seed=0)
    with pytest.raises(ValueError, match="asked for 7 identities"):
        read_webface(tmp_path, identities=7, train_per_class=1, val_per_class=1, split_seed=0)
    with pytest.raises(DatasetError) as err:
        read_webface(tmp_path / "missing", split_seed=0)
    assert_error_mentions(err.value, "CASIA-WebFace", str(tmp_path / "missing"), "authors")


# --- image folders -------------------------------------------------------------------------


def test_imagefolder_with_all_splits(tmp_path: Path) -> None:
    fx = make_imagefolder(tmp_path)
    index = read_imagefolder(tmp_path)
    assert_matches_fixture(index, fx)
    assert not any(s.path.suffix == ".txt" for s in index.train)


def test_imagefolder_optional_splits(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, with_val=False, with_test=False)
    index = read_imagefolder(tmp_path)
    assert index.val is None
    assert index.test == []
    assert len(index.train) == 13


def test_imagefolder_reads_every_format_pillow_reads(tmp_path: Path) -> None:
    files = {
        "train/bmp_only/a.bmp": "RGB",
        "train/bmp_only/b.BMP": "L",
        "train/mixed/c.webp": "RGB",
        "train/mixed/d.tif": "I;16",
        "train/mixed/e.gif": "L",
        "test/bmp_only/f.png": "I;16",
        "test/mixed/g.tiff": "RGB",
    }
    for name, mode in files.items():
        write_image(tmp_path / name, mode)
    (tmp_path / "train" / "mixed" / "notes.txt").write_text("not an image\n")
    index = read_imagefolder(tmp_path)
    assert index.class_names == ["bmp_only", "mixed"]
    assert rel(index.train, tmp_path) + rel(index.test, tmp_path) == list(files)
    assert [p.name for p in index.ignored] == ["notes.txt"]
    images, skipped = decode_all([s.path for s in index.train + index.test], size=16)
    assert images.shape == (7, 3, 16, 16) and skipped == []


def test_imagefolder_leaves_out_hidden_files_and_folders_and_formats_it_cannot_decode(
    tmp_path: Path,
) -> None:
    for name in ("train/cat/a.png", "train/dog/b.png", "test/cat/c.png"):
        write_image(tmp_path / name)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # Jupyter's: an empty "class"
    write_image(tmp_path / "train" / ".cache" / "d.png")  # a hidden folder with an image
    write_image(tmp_path / "train" / "cat" / "._a.png")  # macOS's copy of a.png's metadata
    (tmp_path / "train" / "dog" / ".DS_Store").write_bytes(b"\0\0")
    for name in ("e.ps", "f.eps", "g.mpg", "h.mpeg"):  # Pillow cannot decode these here
        (tmp_path / "train" / "dog" / name).write_bytes(b"x")
    index = read_imagefolder(tmp_path)
    assert index.class_names == ["cat", "dog"]
    assert rel(index.train, tmp_path) == ["train/cat/a.png", "train/dog/b.png"]
    # EPS decodes where Ghostscript is installed; MPEG never (Pillow reads only its header).
    eps = [] if images.EpsImagePlugin.has_ghostscript() else ["e.ps", "f.eps"]
    assert sorted(p.name for p in index.ignored) == sorted(["g.mpg", "h.mpeg", *eps])


def test_imagefolder_follows_folder_links_and_lists_loops(tmp_path: Path, caplog) -> None:
    write_image(tmp_path / "train" / "cat" / "a.png")
    write_image(tmp_path / "elsewhere" / "more" / "b.png")
    (tmp_path / "train" / "cat" / "linked").symlink_to(tmp_path / "elsewhere" / "more")
    write_image(tmp_path / "train" / "dog" / "c.png")
    (tmp_path / "train" / "dog" / "again").symlink_to(tmp_path / "train" / "dog")  # a loop
    write_image(tmp_path / "test" / "cat" / "d.png")
    index = read_imagefolder(tmp_path)
    assert rel(index.train, tmp_path) == [
        "train/cat/a.png",
        "train/cat/linked/b.png",
        "train/dog/c.png",
    ]
    assert index.loops == (tmp_path / "train" / "dog" / "again",)
    index.warn_left_out("mine")
    assert "mine: did not follow 1 folder link(s) that lead back into a folder" in caplog.text


def test_imagefolder_errors_name_the_accepted_extensions(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "cat" / "a.png")
    (tmp_path / "train" / "dog" / "photo.heif").parent.mkdir(parents=True)
    (tmp_path / "train" / "dog" / "photo.heif").write_bytes(b"not decoded by Pillow")
    with pytest.raises(DatasetError) as err:
        read_imagefolder(tmp_path)
    assert_error_mentions(err.value, "['dog']", ".bmp", ".jpg", ".png", ".tif", ".webp")

    write_image(tmp_path / "train" / "dog" / "b.jpeg")
    (tmp_path / "val" / "cat").mkdir(parents=True)  # a val/ folder without images
    with pytest.raises(DatasetError) as err:
        read_imagefolder(tmp_path)
    assert_error_mentions(err.value, f"dataset.root={tmp_path}", "val/", ".webp")


def test_imagefolder_unknown_class(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, extra_val_class=True)
    with pytest.raises(DatasetError, match="horse"):
        read_imagefolder(tmp_path)
    with pytest.raises(DatasetError) as err:
        read_imagefolder(tmp_path / "other")
    assert_error_mentions(err.value, str(tmp_path / "other" / "train"), "train/<class>/<image>")


def test_readers_registry() -> None:
    assert set(READERS) == {
        "flower102",
        "cub200",
        "mit67",
        "stanford40",
        "caltech256",
        "webface",
        "imagefolder",
    }
    assert READERS["mit67"] is read_mit67


# --- validation hold-out -------------------------------------------------------------------


def _train_set() -> list[Sample]:
    sizes = {0: 30, 1: 11, 2: 2, 3: 1, 4: 4}
    return [Sample(Path(f"/d/{c}/{k}.jpg"), c) for c in sizes for k in range(sizes[c])]


def test_holdout_val_stratified() -> None:
    train = _train_set()
    kept, val = holdout_val(train, fraction=0.1, split_seed=0)
    assert Counter(s.label for s in val) == {0: 3, 1: 1, 2: 1, 4: 1}  # none from singleton 3
    assert Counter(s.label for s in kept) == {0: 27, 1: 10, 2: 1, 3: 1, 4: 3}
    assert sorted(kept + val, key=train.index) == train
    assert kept == sorted(kept, key=train.index) and val == sorted(val, key=train.index)


def test_holdout_val_seeded() -> None:
    train = _train_set()
    assert holdout_val(train, fraction=0.1, split_seed=3) == holdout_val(
        train, fraction=0.1, split_seed=3
    )
    assert holdout_val(train, fraction=0.1, split_seed=3) != holdout_val(
        train, fraction=0.1, split_seed=4
    )
    with pytest.raises(ValueError):
        holdout_val(train, fraction=1.0, split_seed=0)


# --- images --------------------------------------------------------------------------------


def test_letterbox_pads_top_and_bottom() -> None:
    out = letterbox(Image.new("RGB", (4, 2), (200, 100, 50)), size=4)
    assert out.dtype == torch.uint8 and out.shape == (3, 4, 4)
    assert torch.all(out[:, [0, 3], :] == 0)
    assert torch.all(
        out[:, 1:3, :] == torch.tensor([200, 100, 50], dtype=torch.uint8)[:, None, None]
    )


def test_letterbox_upscales_portrait_grayscale() -> None:
    # 1x2 gray -> 2x4 inside 4x4: columns 1-2 filled, columns 0 and 3 black.
    out = letterbox(Image.new("L", (1, 2), 77), size=4)
    assert out.shape == (3, 4, 4)
    assert torch.all(out[:, :, [0, 3]] == 0)
    assert torch.all(out[:, :, 1:3] == 77)


def test_letterbox_downscales_and_converts_cmyk() -> None:
    img = Image.new("CMYK", (500, 250), (0, 0, 0, 0))  # no ink: white
    out = letterbox(img, size=250)
    assert out.shape == (3, 250, 250)
    # 250x125 pasted at row (250 - 125) // 2 = 62.
    assert torch.all(out[:, :62] == 0) and torch.all(out[:, 62 + 125 :] == 0)
    assert torch.all(out[:, 62 : 62 + 125] == 255)


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(".png", np.uint16), (".tif", np.uint16), (".tif", np.int32)]
)
def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(
    tmp_path: Path, suffix: str, dtype: type
) -> None:
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=dtype)).save(path)
    with Image.open(path) as img:
        assert img.mode in {"I;16", "I;16B", "I"}  # what Pillow makes of 16-bit files
    out = load_letterboxed(path, size=2)
    assert out.dtype == torch.uint8
    for channel in out:
        assert channel.tolist() == [[0, 64], [128, 255]]


def test_load_letterboxed_truncated_names_path(tmp_path: Path) -> None:
    bad = write_truncated_jpeg(tmp_path / "dir with space" / "bad.jpg")
    with Image.open(bad) as img:  # the trap: it opens fine
        img.verify()
    with pytest.raises(UnreadableImageError) as err:
        load_letterboxed(bad)
    assert err.value.path == bad
    assert_error_mentions(err.value, str(bad), "Delete or replace", "dataset.skip_unreadable=true")
    assert isinstance(err.value, DatasetError)


def _image_files(tmp_path: Path, n: int = 6) -> list[Path]:
    return [write_jpeg(tmp_path / f"img_{i}.jpg") for i in range(n)]


def test_decode_all_skip_unreadable(tmp_path: Path) -> None:
    paths = _image_files(tmp_path, 4)
    paths.insert(2, write_truncated_jpeg(tmp_path / "bad.jpg"))
    paths.append(tmp_path / "not_an_image.jpg")
    paths[-1].write_text("hello")
    with pytest.raises(UnreadableImageError, match="bad.jpg"):
        decode_all(paths, size=8)
    data, skipped = decode_all(paths, size=8, skip_unreadable=True)
    assert skipped == [2, 5]
    assert data.shape == (4, 3, 8, 8) and data.dtype == torch.uint8
    good = [p for i, p in enumerate(paths) if i not in skipped]
    assert torch.equal(data, torch.stack([load_letterboxed(p, 8) for p in good]))


def test_decode_all_threads_match_serial(tmp_path: Path) -> None:
    paths = _image_files(tmp_path, 12)
    serial, _ = decode_all(paths, size=16)
    threaded, skipped = decode_all(paths, size=16, num_workers=4)
    assert skipped == []
    assert torch.equal(serial, threaded)
    paths.insert(5, write_truncated_jpeg(tmp_path / "bad.jpg"))
    with pytest.raises(UnreadableImageError, match="bad.jpg"):
        decode_all(paths, size=16, num_workers=4)
    _, skipped = decode_all(paths, size=16, num_workers=4, skip_unreadable=True)
    assert skipped == [5]


def test_decode_all_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _image_files(tmp_path, 5)
    cache = tmp_path / "cache" / "train.npy"
    first, _ = decode_all(paths, size=8, cache_file=cache)
    assert cache.is_file()
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]

    def fail(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decoded although the cache matches")

    monkeypatch.setattr(images, "load_letterboxed", fail)
    second, skipped = decode_all(paths, size=8, cache_file=cache, num_workers=2)
    assert skipped == [] and torch.equal(first, second)
    second += 1  # copy-on-write: the file on disk is untouched
    assert torch.equal(decode_all(paths, size=8, cache_file=cache)[0], first)

    # Different paths or size: the cache is stale and must be rebuilt.
    for changed_paths, size in ((paths[:4], 8), (paths, 6)):
        with pytest.raises(AssertionError, match="decoded although"):
            decode_all(changed_paths, size=size, cache_file=cache)
    monkeypatch.undo()
    rebuilt, _ = decode_all(paths[:4], size=8, cache_file=cache)
    assert torch.equal(rebuilt, first[:4])


def test_decode_all_cache_with_skipped(tmp_path: Path) -> None:
    paths = _image_files(tmp_path, 3)
    paths.insert(1, write_truncated_jpeg(tmp_path / "bad.jpg"))
    cache = tmp_path / "c.npy"
    data, skipped = decode_all(paths, size=8, skip_unreadable=True, cache_file=cache)
    assert skipped == [1] and data.shape[0] == 3
    again, skipped_again = decode_all(paths, size=8, skip_unreadable=True, cache_file=cache)
    assert skipped_again == [1] and torch.equal(again, data)
    # A strict caller is not served a cache that silently dropped a file.
    with pytest.raises(UnreadableImageError):
        decode_all(paths, size=8, cache_file=cache)
    assert np.load(cache).shape == (3, 3, 8, 8)


DECODE_COUNTING = """
import json, sys, time
from pathlib import Path
import ptr_lightning.data.images as images

paths, log, cache = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
load = images.load_letterboxed

def counted(path, size=250):
    with open(log, "a") as f:
        f.write(f"{path}\\n")
    time.sleep(0.2)  # a slow decode: the other process arrives meanwhile
    return load(path, size)

images.load_letterboxed = counted
images.decode_all([Path(p) for p in paths], size=8, cache_file=cache)
"""


def test_processes_sharing_a_cache_decode_it_once(tmp_path: Path) -> None:
    """As data-parallel ranks do: one decodes into the cache, the other waits and maps it."""
    import json
    import subprocess
    import sys

    paths = [str(p) for p in _image_files(tmp_path, 6)]
    log, cache = tmp_path / "decoded.log", tmp_path / "cache" / "train.npy"
    args = [sys.executable, "-c", DECODE_COUNTING, json.dumps(paths), str(log), str(cache)]
    ranks = [subprocess.Popen(args), subprocess.Popen(args)]
    assert [rank.wait(timeout=120) for rank in ranks] == [0, 0]
    assert sorted(log.read_text().splitlines()) == sorted(paths)  # each image decoded once
    assert decode_all([Path(p) for p in paths], size=8, cache_file=cache)[0].shape[0] == 6
