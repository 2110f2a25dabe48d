"""The paper's data sets as DataModules, composed through Hydra, on fixtures in each archive's
exact layout; and a whole run on a user's image folders (split.json, predictions.npz)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ptr_lightning.core.errors import DatasetError
from ptr_lightning.data.images import UnreadableImageError
from ptr_lightning.run.build import build_module
from ptr_lightning.run.train import train
from tests.conftest import compose_config
from tests.fixtures.archives import (
    make_caltech256,
    make_cub200,
    make_flower102,
    make_imagefolder,
    make_mit67,
    make_stanford40,
    make_webface,
    write_image,
    write_truncated_jpeg,
)

SMALL = ["dataset.image_size=40", "dataset.crop=32", "dataset.decode_workers=2"]

CALTECH_SMALL = [
    "dataset.reader_args.train_per_class=3",
    "dataset.reader_args.test_per_class=2",
    "dataset.reader_args.val_per_class=1",
]


CASES = {
    "flower102": (make_flower102, []),
    "cub200": (make_cub200, []),
    "mit67": (make_mit67, []),
    "stanford40": (make_stanford40, []),
    "caltech256_30": (make_caltech256, CALTECH_SMALL),
    "webface500": (
        make_webface,
        [
            "dataset.reader_args.identities=4",
            "dataset.reader_args.train_per_class=3",
            "dataset.reader_args.val_per_class=1",
        ],
    ),
    "imagefolder": (make_imagefolder, []),
}


def datamodule(name: str, root: Path, *overrides: str):
    cfg = compose_config(
        [
            f"dataset={name}",
            f"dataset.root={root}",
            *SMALL,
            *overrides,
            "paths.output_dir=/tmp/unused",
        ]
    )
    dm = instantiate(cfg.dataset)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name", sorted(CASES))
def test_dataset_splits_labels_and_items(name, tmp_path):
    make, overrides = CASES[name]
    fixture = make(tmp_path / "data")
    dm = datamodule(name, fixture.root, *overrides)

    sizes = {split: len(getattr(dm, f"{split}_dataset")) for split in ("train", "val", "test")}
    assert all(n > 0 for n in sizes.values()), sizes
    assert {split: len(ids) for split, ids in dm.split_ids.items()} == sizes
    all_ids = [i for ids in dm.split_ids.values() for i in ids]
    assert len(set(all_ids)) == len(all_ids), "an image is in two splits"
    if fixture.splits is not None and "val" in fixture.splits:
        assert sizes == fixture.counts()
    if fixture.splits is not None:
        assert sorted(dm.split_ids["test"]) == sorted(fixture.splits["test"])
    if name != "webface500":  # WebFace's labels depend on which identities are chosen
        assert dm.class_names == fixture.class_names
        for split in ("train", "val", "test"):
            labels = getattr(dm, f"{split}_dataset").labels.tolist()
            assert labels == [fixture.labels[i] for i in dm.split_ids[split]]

    image, label = dm.train_dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 40)
    assert isinstance(label, int) and 0 <= label < dm.num_classes
    views = dm.test_transform(torch.stack([dm.test_dataset[i][0] for i in range(2)]))
    assert views.shape == (2, 10, 3, 32, 32)
    assert dm.train_transform(dm.train_dataset.images[:2]).shape == (2, 3, 32, 32)

    again = datamodule(name, fixture.root, *overrides)
    assert again.split_ids == dm.split_ids  # deterministic for a split seed


def test_image_folders_without_test_split_fail_before_training(make_cfg, tmp_path):
    fixture = make_imagefolder(tmp_path / "data", with_test=False)
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={fixture.root}", *SMALL, tiny=False)
    with pytest.raises(DatasetError, match="no test images"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_caltech256_validation_comes_from_the_rest_unless_asked(tmp_path):
    fixture = make_caltech256(tmp_path / "data")
    rest = datamodule("caltech256_30", fixture.root, *CALTECH_SMALL)
    assert len(rest.split_ids["train"]) == 5 * 3  # all the training images train
    assert len(rest.split_ids["test"]) == 5 * 2 and len(rest.split_ids["val"]) == 5 * 1

    held = datamodule("caltech256_30", fixture.root, *CALTECH_SMALL, "dataset.val_from_train=true")
    assert held.split_ids["test"] == rest.split_ids["test"]
    assert sorted(held.split_ids["train"] + held.split_ids["val"]) == sorted(
        rest.split_ids["train"]
    )
    assert len(held.split_ids["val"]) == 5  # 10% of 3 per class, rounded up to one

    with pytest.raises(DatasetError, match="dataset.reader_args.val_per_class=0") as err:
        datamodule(
            "caltech256_30", fixture.root, *CALTECH_SMALL, "dataset.reader_args.val_per_class=0"
        )
    assert "dataset.val_from_train=true" in str(err.value)


def test_caltech256_class_with_nothing_left_for_validation_is_reported(tmp_path, caplog):
    # As 60 + 20 of a class of 80 images: train + test take all of 001.ak47.
    counts = {"001.ak47": 5, "002.american-flag": 7, "257.clutter": 8}
    fixture = make_caltech256(tmp_path / "data", counts)
    with caplog.at_level(logging.INFO, logger="ptr_lightning"):
        dm = datamodule("caltech256_30", fixture.root, *CALTECH_SMALL)
    assert sorted(dm.val_dataset.labels.tolist()) == [1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert (
        "caltech256_30: 3 classes; train 9 images / 3 classes, val 2 images / 2 classes, "
        "test 6 images / 3 classes"
    ) in lines
    assert "caltech256_30: val has no image of 1 of the 3 classes, e.g. 001.ak47" in lines


def test_split_sizes_are_reported_in_one_line(tmp_path, caplog):
    fixture = make_imagefolder(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="ptr_lightning"):
        datamodule("imagefolder", fixture.root)
    lines = [r.getMessage() for r in caplog.records]
    assert (
        "imagefolder: 3 classes; train 13 images / 3 classes, val 6 images / 3 classes, "
        "test 9 images / 3 classes"
    ) in lines
    ignored = [line for line in lines if "ignored 1 file" in line]
    assert len(ignored) == 1 and "notes.txt" in ignored[0]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("one_class", r"dataset.root=.* holds 1 class \(cat\).*at least 2"),
        ("empty_val", r"dataset.root=.* has a val/ folder without images"),
        ("one_image_each", r"dataset.val_fraction=0.1 .* no class has two training images"),
    ],
)
def test_unusable_image_folders_fail_before_training(make_cfg, tmp_path, layout, message):
    root = tmp_path / "data"
    write_image(root / "train" / "cat" / "a.png")
    write_image(root / "test" / "cat" / "c.png")
    if layout != "one_image_each":
        write_image(root / "train" / "cat" / "b.png")
    if layout != "one_class":
        write_image(root / "train" / "dog" / "d.png")
        write_image(root / "test" / "dog" / "e.png")
    if layout == "empty_val":
        (root / "val" / "cat").mkdir(parents=True)
    cfg = make_cfg(
        "dataset=imagefolder",
        f"dataset.root={root}",
        *SMALL,
        "model.weights=null",
        "trainer.max_epochs=1",
        tiny=False,
    )
    with pytest.raises(DatasetError, match=message):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_validation_holdout_depends_on_split_seed_only(tmp_path):
    fixture = make_cub200(tmp_path / "data")
    a = datamodule("cub200", fixture.root, "dataset.split_seed=1", "seed=5")
    b = datamodule("cub200", fixture.root, "dataset.split_seed=1", "seed=6")
    c = datamodule("cub200", fixture.root, "dataset.split_seed=2")
    assert a.split_ids == b.split_ids
    assert a.split_ids["val"] != c.split_ids["val"]
    assert sorted(a.split_ids["train"] + a.split_ids["val"]) == sorted(fixture.splits["train"])


def test_missing_root_fails_before_training_with_layout_and_source(make_cfg, tmp_path):
    cfg = make_cfg("dataset=mit67", f"dataset.root={tmp_path / 'nowhere'}", tiny=False)
    with pytest.raises(DatasetError) as err:
        train(cfg)
    message = str(err.value)
    assert "nowhere" in message and "TrainImages.txt" in message
    assert "web.mit.edu" in message
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_unreadable_image_names_its_path_or_is_skipped(tmp_path):
    fixture = make_imagefolder(tmp_path / "data")
    bad = write_truncated_jpeg(fixture.root / "train" / "cat" / "broken.jpg")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        datamodule("imagefolder", fixture.root)
    dm = datamodule("imagefolder", fixture.root, "dataset.skip_unreadable=true")
    assert dm.skipped == {"train": [bad.relative_to(fixture.root).as_posix()]}
    assert len(dm.train_dataset) == len(fixture.splits["train"])


def test_run_on_image_folders_saves_split_and_predictions(make_cfg, tmp_path):
    fixture = make_imagefolder(tmp_path / "data")
    cfg = make_cfg(
        "dataset=imagefolder",
        f"dataset.root={fixture.root}",
        *SMALL,
        "model=resnet18",
        "model.weights=null",
        "dataset.batch_size=4",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "regularizer.T=100",
        tiny=False,
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    for key in ("test/acc", "test/acc_1crop", "test/mean_class_acc"):
        assert 0.0 <= metrics[key] <= 1.0

    split = json.loads((run / "split.json").read_text())
    assert split["split_seed"] == 0 and split["class_names"] == fixture.class_names
    assert sorted(split["test"]) == sorted(fixture.splits["test"])

    predictions = np.load(run / "predictions.npz")
    probabilities, labels = predictions["probabilities"], predictions["labels"]
    assert probabilities.shape == (len(fixture.splits["test"]), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert list(predictions["ids"]) == split["test"]
    assert list(labels) == [fixture.labels[i] for i in split["test"]]
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    val = np.load(run / "predictions_val.npz")
    assert list(val["ids"]) == split["val"] and val["probabilities"].shape == (len(split["val"]), 3)

    # Validation predictions come from the final model with the test's ten crops (training-time
    # validation used the centre crop), so the two files' entropies compare.
    dm = datamodule("imagefolder", fixture.root, *SMALL)
    module = build_module(cfg, dm)
    module.load_state_dict(torch.load(run / "checkpoints" / "last.ckpt")["state_dict"])
    module.eval()
    with torch.no_grad():
        views = {
            kind: module.view_probabilities(transform(dm.val_dataset.images)).mean(dim=1).numpy()
            for kind, transform in (("ten", dm.test_transform), ("centre", dm.val_transform))
        }
    np.testing.assert_allclose(val["probabilities"], views["ten"], rtol=1e-4, atol=1e-6)
    assert not np.allclose(val["probabilities"], views["centre"], rtol=1e-4, atol=1e-6)
