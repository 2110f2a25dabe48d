"""Batched image transforms that run on the training device, after the batch is transferred.

Data sets hand over uint8 images; these turn them into normalized float batches, so a GPU run
is not bound by CPU workers doing per-image work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from ptr_lightning.core.settings import Rule, integer, numbers

# torchvision's ImageNet weights were trained on inputs normalized with these statistics; a run
# takes the statistics of its model's weights (``model.input.mean``, ``model.input.std``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


MEAN_RULE = numbers(
    "dataset.mean",
    3,
    "three numbers, one per RGB channel (model.input.mean gives the weights' own)",
)
STD_RULE = numbers(
    "dataset.std",
    3,
    "three numbers > 0, one per RGB channel (model.input.std gives the weights' own)",
    lambda x: x > 0,
)


class Normalize(nn.Module):
    """uint8 (B, C, H, W) in [0, 255] -> float (B, C, H, W) normalized with ``mean`` and
    ``std`` (per channel, on the 0..1 scale; ImageNet's by default)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        mean, std = tuple(MEAN_RULE.check(mean)), tuple(STD_RULE.check(std))
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return (images.float() - self.mean) / self.std


class SingleView(nn.Module):
    """Evaluation on the whole image: (B, C, H, W) -> (B, 1, C, H, W) normalized views."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.normalize = Normalize(mean, std)

    def forward(self, images: Tensor) -> Tensor:
        return self.normalize(images).unsqueeze(1)


# The bounds of the augmentation and crop settings, checked by every transform that takes them.
CROP_RULE = integer("dataset.crop", 1)
MAX_SCALE_RULE = Rule("dataset.max_scale", lambda v: 0 <= v < 1, "in [0, 1)")
MAX_ROTATION_RULE = Rule("dataset.max_rotation", lambda v: 0 <= v <= 180, "in [0, 180] degrees")


def _check_size(images: Tensor, crop: int) -> tuple[int, int]:
    if images.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height < crop or width < crop:
        raise ValueError(f"crop {crop} is larger than the {height}x{width} images")
    return height, width


def _sampling_dtype(device: torch.device) -> torch.dtype:
    # In float32 the grid's rounding leaks up to ~1e-5 of the neighbouring pixel into an
    # integer-pixel sample (0.008 grey levels); float64 leaves ~1e-11, which normalization in
    # float32 absorbs, so a pure crop is bit-identical to slicing. MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class AugmentParams(NamedTuple):
    """Per-image random parameters of :class:`TrainAugment`, each of shape (B,)."""

    top: Tensor  # int64, row of the crop window's top edge, in [0, H - crop]
    left: Tensor  # int64, column of the crop window's left edge, in [0, W - crop]
    scale: Tensor  # float zoom factor; > 1 magnifies (the view covers crop / scale pixels)
    angle: Tensor  # float degrees; positive turns the content counter-clockwise on screen
    flip: Tensor  # bool, mirror the view left-right


class TrainAugment(nn.Module):
    """Training augmentation of the paper: random jittering, subtle scaling and rotation, flips.

    Zhong & Maki (CVPR 2020), Section 3.1, augments the letterboxed 250x250 training images with
    "random jittering and subtle scaling and rotation perturbations" (and flips, per the spec).
    Every image of the batch gets its own parameters (see :class:`AugmentParams`), drawn as a
    few batched tensors from torch's global RNG on the batch's device, so ``seed_everything``
    governs them. The whole batch is then resampled by one ``affine_grid`` + ``grid_sample``
    (bilinear) call, so the device does the work, not CPU workers looping over images.

    Geometry: the output is a ``crop`` x ``crop`` view centred on a crop window whose top-left
    corner is an integer position drawn uniformly over all windows inside the image (the
    jitter), rotated about that centre by ``angle`` and zoomed by ``scale``. Pixels that fall
    outside the image are zero, the same black as the letterbox padding. With
    ``max_scale=0``, ``max_rotation=0`` and ``flip=False`` it is exactly a random crop.

    ``normalize=False`` returns float values on the input's 0..255 scale instead of ones
    normalized with ``mean`` and ``std``.
    """

    def __init__(
        self,
        crop: int = 224,
        max_scale: float = 0.1,
        max_rotation: float = 10.0,
        flip: bool = True,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        CROP_RULE.check(crop)
        MAX_SCALE_RULE.check(max_scale)
        MAX_ROTATION_RULE.check(max_rotation)
        self.crop, self.max_scale, self.max_rotation = crop, max_scale, max_rotation
        self.flip = flip
        self.normalize = Normalize(mean, std) if normalize else None

    def extra_repr(self) -> str:
        return (
            f"crop={self.crop}, max_scale={self.max_scale}, max_rotation={self.max_rotation}, "
            f"flip={self.flip}, normalize={self.normalize is not None}"
        )

    def sample(
        self, batch: int, height: int, width: int, device: torch.device | str
    ) -> AugmentParams:
        """Draw the parameters of ``batch`` images of size ``height`` x ``width``."""
        device = torch.device(device)
        # Drawn unconditionally and in a fixed order, so the RNG stream consumed per batch does
        # not depend on which perturbations are switched on.
        top = torch.randint(0, height - self.crop + 1, (batch,), device=device)
        left = torch.randint(0, width - self.crop + 1, (batch,), device=device)
        uniform = torch.rand(3, batch, device=device, dtype=_sampling_dtype(device)) * 2.0 - 1.0
        scale = 1.0 + self.max_scale * uniform[0]
        angle = self.max_rotation * uniform[1]
        flip = (uniform[2] < 0.0) & self.flip  # all False when flips are off
        return AugmentParams(top, left, scale, angle, flip)

    def theta(self, params: AugmentParams, height: int, width: int) -> Tensor:
        """The (B, 2, 3) ``affine_grid`` matrices that realise ``params``, in their float dtype.

        ``affine_grid`` maps output coordinates to input coordinates, both normalized to
        [-1, 1] over the image's extent. The map is built in pixel units relative to the
        centres (output pixel offset u -> input pixel offset R(angle) F u / scale + window
        centre) and then rescaled per axis, so rotation stays rigid on non-square images.
        """
        crop, dtype = self.crop, params.scale.dtype
        radians = torch.deg2rad(params.angle.to(dtype))
        cos, sin = radians.cos() / params.scale, radians.sin() / params.scale
        mirror = 1.0 - 2.0 * params.flip.to(dtype)
        # Offset of the crop window's centre from the image centre, in pixels.
        centre_x = params.left.to(dtype) + (crop - width) / 2.0
        centre_y = params.top.to(dtype) + (crop - height) / 2.0
        row_x = torch.stack(
            [cos * mirror * crop / width, -sin * crop / width, 2.0 * centre_x / width], -1
        )
        row_y = torch.stack(
            [sin * mirror * crop / height, cos * crop / height, 2.0 * centre_y / height], -1
        )
        return torch.stack([row_x, row_y], dim=1)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Resample ``images`` (B, C, H, W) with given ``params``, in one ``grid_sample`` call."""
        height, width = _check_size(images, self.crop)
        batch, channels = images.shape[:2]
        dtype = _sampling_dtype(images.device)
        theta = self.theta(params, height, width).to(dtype)
        # align_corners=False puts samples at pixel centres, so integer shifts land exactly on
        # input pixels and the pure-crop case reproduces slicing.
        grid = F.affine_grid(theta, [batch, channels, self.crop, self.crop], align_corners=False)
        out = F.grid_sample(
            images.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        ).float()
        return self.normalize(out) if self.normalize is not None else out

    def forward(self, images: Tensor) -> Tensor:
        height, width = _check_size(images, self.crop)
        return self.apply(images, self.sample(images.shape[0], height, width, images.device))


class _FixedCrops(nn.Module):
    """Evaluation views cut at fixed positions: uint8 (B, C, H, W) -> normalized
    (B, V, C, crop, crop)."""

    def __init__(
        self,
        crop: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.crop = CROP_RULE.check(crop)
        self.normalize = Normalize(mean, std)

    def extra_repr(self) -> str:
        return f"crop={self.crop}"

    def normalized(self, views: Tensor) -> Tensor:
        return self.normalize(views.flatten(0, 1)).unflatten(0, views.shape[:2])


class TenCrop(_FixedCrops):
    """Ten-crop evaluation of the paper: uint8 (B, C, H, W) -> normalized (B, 10, C, crop, crop).

    Zhong & Maki (CVPR 2020), Section 3.1, average "the network responses from the target-task
    classifiers over ten crops which were sampled from the corners and the centers of originals
    and the flipped counterparts"; ``FineTuner.test_step`` does the averaging. The crops are
    torchvision's ``five_crop`` ones, ordered centre, top-left, top-right, bottom-left,
    bottom-right, then the left-right mirrors of those five in the same order: view 0 is the
    unflipped centre crop, so a 1-crop accuracy can be read from it. (torchvision's
    ``ten_crop`` puts the centre fifth and crops its mirrored five from the mirrored image, so
    its mirrored top-left is our mirrored top-right; when ``size - crop`` is odd its mirrored
    centre is also half a pixel off the mirror of the centre crop. The paper's 250 -> 224 is
    even.)
    """

    def forward(self, images: Tensor) -> Tensor:
        _check_size(images, self.crop)
        top_left, top_right, bottom_left, bottom_right, centre = TF.five_crop(
            images, [self.crop, self.crop]
        )
        crops = torch.stack([centre, top_left, top_right, bottom_left, bottom_right], dim=1)
        return self.normalized(torch.cat([crops, crops.flip(-1)], dim=1))


class CentreCrop(_FixedCrops):
    """Single-view evaluation at crop size: uint8 (B, C, H, W) -> normalized (B, 1, C, crop, crop).

    torchvision's ``center_crop``: the same crop as view 0 of :class:`TenCrop`, for a cheap
    1-crop evaluation of the paper's protocol (Zhong & Maki, CVPR 2020, Section 3.1).
    """

    def forward(self, images: Tensor) -> Tensor:
        _check_size(images, self.crop)
        return self.normalized(TF.center_crop(images, [self.crop, self.crop]).unsqueeze(1))
