"""On-device transforms of the paper's protocol (Zhong & Maki, CVPR 2020, Section 3.1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.testing import assert_close

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.data.transforms import (
    AugmentParams,
    CentreCrop,
    Normalize,
    TenCrop,
    TrainAugment,
)

normalize = Normalize()


def assert_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert_close(actual, expected, rtol=0, atol=0)


def random_images(batch: int, height: int, width: int | None = None, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = (batch, 3, height, width or height)
    return torch.randint(0, 256, size, dtype=torch.uint8, generator=generator)


def params(batch: int, *, top=0, left=0, scale=1.0, angle=0.0, flip=False) -> AugmentParams:
    def full(value, dtype):
        return torch.full((batch,), value, dtype=dtype)

    return AugmentParams(
        full(top, torch.int64),
        full(left, torch.int64),
        full(scale, torch.float64),
        full(angle, torch.float64),
        full(flip, torch.bool),
    )


# ---------------------------------------------------------------------------------------------
# TenCrop / CentreCrop


def test_ten_crop_views_on_a_hand_computed_6x6_image():
    images = torch.arange(2 * 3 * 36, dtype=torch.uint8).view(2, 3, 6, 6)
    # Channel 0 of image 0 holds 6 * row + column; every other plane adds 36 per plane.
    centre = [[7, 8, 9, 10], [13, 14, 15, 16], [19, 20, 21, 22], [25, 26, 27, 28]]
    top_left = [[0, 1, 2, 3], [6, 7, 8, 9], [12, 13, 14, 15], [18, 19, 20, 21]]
    top_right = [[2, 3, 4, 5], [8, 9, 10, 11], [14, 15, 16, 17], [20, 21, 22, 23]]
    bottom_left = [[12, 13, 14, 15], [18, 19, 20, 21], [24, 25, 26, 27], [30, 31, 32, 33]]
    bottom_right = [[14, 15, 16, 17], [20, 21, 22, 23], [26, 27, 28, 29], [32, 33, 34, 35]]
    plane_offset = 36 * torch.arange(6).view(2, 3, 1, 1)
    crops = [torch.tensor(v) + plane_offset for v in (centre, top_left, top_right, bottom_left)]
    crops.append(torch.tensor(bottom_right) + plane_offset)
    unflipped = torch.stack(crops, dim=1).to(torch.uint8)  # (2, 5, 3, 4, 4)
    expected = torch.cat([unflipped, unflipped.flip(-1)], dim=1)

    views = TenCrop(crop=4)(images)

    assert views.shape == (2, 10, 3, 4, 4)
    assert views.dtype == torch.float32
    assert_equal(views, normalize(expected.flatten(0, 1)).view(2, 10, 3, 4, 4))
    assert_equal(views[:, 0], normalize(images[..., 1:5, 1:5]))
    # The hand-written mirror of the centre crop's first row pins the flip's axis.
    mirrored_row = torch.tensor([[[[10, 9, 8, 7]]]], dtype=torch.uint8).expand(1, 3, 1, 4)
    assert_equal(views[0, 5, 0, 0], normalize(mirrored_row)[0, 0, 0])


def test_ten_crop_second_half_mirrors_the_first_half():
    views = TenCrop(crop=5)(random_images(3, 9))
    assert_equal(views[:, 5:], views[:, :5].flip(-1))


@pytest.mark.parametrize(
    ("height", "width", "crop"), [(6, 6, 4), (7, 7, 4), (9, 9, 4), (9, 12, 5), (250, 250, 224)]
)
def test_ten_crop_matches_torchvision_in_our_order(height, width, crop):
    images = random_images(2, height, width)
    ours = TenCrop(crop)(images)
    # torchvision: tl, tr, bl, br, centre, then the same five taken from the mirrored image,
    # whose top-left crop is the mirror of the original's top-right crop, and so on.
    theirs = TF.ten_crop(images, [crop, crop])
    order = {0: 4, 1: 0, 2: 1, 3: 2, 4: 3, 5: 9, 6: 6, 7: 5, 8: 8, 9: 7}
    if (height - crop) % 2 or (width - crop) % 2:
        # With an odd margin the centre window is off-centre by half a pixel, so the mirrored
        # image's centre crop is not the mirror of the centre crop; ours mirrors view 0.
        del order[5]
    for view, index in order.items():
        assert_equal(ours[:, view], normalize(theirs[index]))
    assert_equal(ours[:, 0], normalize(TF.center_crop(images, [crop, crop])))


def test_centre_crop_is_ten_crop_view_zero():
    images = random_images(4, 11)
    single = CentreCrop(crop=6)(images)
    assert single.shape == (4, 1, 3, 6, 6)
    assert_equal(single[:, 0], TenCrop(crop=6)(images)[:, 0])


@pytest.mark.parametrize("module", [TenCrop(8), CentreCrop(8), TrainAugment(8)])
def test_crop_larger_than_image_is_rejected(module):
    with pytest.raises(ValueError, match="larger"):
        module(random_images(1, 7))


# ---------------------------------------------------------------------------------------------
# TrainAugment


@pytest.mark.parametrize("batch", [1, 5])
def test_train_augment_shape_and_dtype(batch):
    out = TrainAugment()(random_images(batch, 250))
    assert out.shape == (batch, 3, 224, 224)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_train_augment_is_seeded_by_the_global_rng():
    images, augment = random_images(4, 40), TrainAugment(crop=32)
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    assert_equal(augment(images), first)
    torch.manual_seed(8)
    assert not torch.equal(augment(images), first)


def coordinate_images(batch: int, height: int, width: int) -> torch.Tensor:
    """Channel 0 holds the row, channel 1 the column, channel 2 noise: a crop reveals its offset."""
    rows = torch.arange(height).view(height, 1).expand(height, width)
    columns = torch.arange(width).view(1, width).expand(height, width)
    images = random_images(batch, height, width)
    images[:, 0], images[:, 1] = rows.to(torch.uint8), columns.to(torch.uint8)
    return images


@pytest.mark.parametrize(
    ("batch", "height", "width", "crop"), [(16, 250, 250, 224), (48, 10, 13, 8)]
)
def test_train_augment_without_perturbations_is_exactly_a_random_crop(batch, height, width, crop):
    images = coordinate_images(batch, height, width)
    raw = TrainAugment(crop, max_scale=0.0, max_rotation=0.0, flip=False, normalize=False)
    augment = TrainAugment(crop, max_scale=0.0, max_rotation=0.0, flip=False)

    torch.manual_seed(3)
    located = raw(images)
    torch.manual_seed(3)
    out = augment(images)
    torch.manual_seed(3)
    drawn = augment.sample(batch, height, width, images.device)

    tops = located[:, 0, 0, 0].round().long()
    lefts = located[:, 1, 0, 0].round().long()
    assert_equal(tops, drawn.top)
    assert_equal(lefts, drawn.left)
    assert tops.min() >= 0 and tops.max() <= height - crop
    assert lefts.min() >= 0 and lefts.max() <= width - crop
    assert len(set(zip(tops.tolist(), lefts.tolist(), strict=True))) > 1
    windows = torch.stack(
        [im[:, t : t + crop, x : x + crop] for im, t, x in zip(images, tops, lefts, strict=True)]
    )
    assert_equal(out, normalize(windows))


def test_train_augment_flips_about_half_of_a_big_batch():
    images = random_images(400, 8)
    torch.manual_seed(0)
    out = TrainAugment(crop=8, max_scale=0.0, max_rotation=0.0, flip=True)(images)
    same = (out == normalize(images)).flatten(1).all(1)
    mirrored = (out == normalize(images.flip(-1))).flatten(1).all(1)
    assert (same ^ mirrored).all()  # each image is exactly itself or its mirror
    assert 120 <= int(mirrored.sum()) <= 280


def test_train_augment_no_flip_when_disabled():
    drawn = TrainAugment(flip=False).sample(500, 250, 250, torch.device("cpu"))
    assert not drawn.flip.any()


def test_rotation_is_the_only_change_to_a_flip_and_shift_invariant_pattern():
    # Horizontal stripes look the same mirrored or shifted sideways; only rotation alters them.
    stripes = (torch.arange(16) % 4 < 2).to(torch.uint8).mul(255).view(1, 1, 16, 1)
    images = stripes.expand(32, 3, 16, 20).contiguous()
    torch.manual_seed(0)
    still = TrainAugment(crop=16, max_scale=0.0, max_rotation=0.0, flip=True)(images)
    assert_equal(still, normalize(images[..., :16]))
    rotated = TrainAugment(crop=16, max_scale=0.0, max_rotation=10.0, flip=True)(images)
    assert (rotated != still).flatten(1).any(1).all()


def test_sampled_parameters_stay_within_their_bounds():
    torch.manual_seed(0)
    drawn = TrainAugment(max_scale=0.1, max_rotation=10.0).sample(2000, 250, 260, "cpu")
    assert drawn.top.min() == 0 and drawn.top.max() == 26
    assert drawn.left.min() == 0 and drawn.left.max() == 36
    assert 0.9 <= drawn.scale.min() < 0.91 and 1.09 < drawn.scale.max() <= 1.1
    assert -10.0 <= drawn.angle.min() < -9.8 and 9.8 < drawn.angle.max() <= 10.0
    still = TrainAugment(max_scale=0.0, max_rotation=0.0).sample(100, 250, 250, "cpu")
    assert (still.scale == 1.0).all() and (still.angle == 0.0).all()


def test_positive_angle_turns_content_counter_clockwise():
    images = random_images(2, 8)
    augment = TrainAugment(crop=8)
    out = augment.apply(images, params(2, angle=90.0))
    assert_equal(out, normalize(torch.rot90(images, 1, dims=(-2, -1))))


def test_flip_mirrors_left_right():
    images = random_images(2, 8)
    out = TrainAugment(crop=8).apply(images, params(2, flip=True))
    assert_equal(out, normalize(images.flip(-1)))


def test_scale_below_one_zooms_out_with_black_outside_the_image():
    # scale 0.5: the 8-pixel view covers 16 input pixels around the centre, so the white
    # 8x8 image lands in the middle 4x4 and the rest samples the zero padding.
    images = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    out = TrainAugment(crop=8, normalize=False).apply(images, params(1, scale=0.5))
    expected = torch.zeros(1, 3, 8, 8)
    expected[..., 2:6, 2:6] = 255.0
    assert_close(out, expected, rtol=0, atol=1e-6)


def test_whole_batch_is_resampled_by_one_grid_sample_call(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return grid_sample(*args, **kwargs)

    grid_sample = F.grid_sample
    monkeypatch.setattr(F, "grid_sample", counting)
    TrainAugment(crop=16)(random_images(6, 20))
    assert calls == [6]


@pytest.mark.parametrize(
    "kwargs", [{"crop": 0}, {"max_scale": -0.1}, {"max_scale": 1.0}, {"max_rotation": -1.0}]
)
def test_invalid_bounds_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainAugment(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"mean": 0.5}, {"mean": None}, {"std": [1, 1]}, {"std": [1, 0, 1]}]
)
def test_bad_normalization_statistics_name_the_key(kwargs):
    with pytest.raises(ConfigError, match=r"dataset\.(mean|std)="):
        Normalize(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_stay_on_the_device_and_crop_exactly():
    images = coordinate_images(16, 250, 250).cuda()
    augment = TrainAugment(max_scale=0.0, max_rotation=0.0, flip=False).cuda()
    torch.manual_seed(1)
    out = augment(images)
    torch.manual_seed(1)
    drawn = augment.sample(16, 250, 250, images.device)
    assert out.device == images.device and drawn.top.device == images.device
    windows = torch.stack(
        [
            im[:, t : t + 224, x : x + 224]
            for im, t, x in zip(images, drawn.top.tolist(), drawn.left.tolist(), strict=True)
        ]
    )
    assert_equal(out, augment.normalize(windows))
    assert TrainAugment().cuda()(images).shape == (16, 3, 224, 224)
    assert TenCrop().cuda()(images).shape == (16, 10, 3, 224, 224)
