"""DELTA: keep the feature maps the source model found important, weighted by channel attention."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import Rule, check, integer, non_negative
from ptr_lightning.core.tensors import at_least_float32, evaluating, on_meta, squared_norm
from ptr_lightning.regularizers.base import Regularizer, StepTensors
from ptr_lightning.regularizers.source_model import (
    frozen,
    require_source_classifier,
    source_head,
)

LAYERS_RULE = Rule(
    "regularizer.layers",
    lambda v: v is not None and len(v) >= 1 and all(isinstance(n, str) and n for n in v),
    "a non-empty list of module names of the backbone whose outputs are feature maps "
    "(per backbone: model.feature_maps in conf/model/<name>.yaml)",
    kind="any",
)
# The authors' code (and Transfer-Learning-Library's) standardizes a layer's channel scores
# and takes softmax(score / 5) as its attention.
ATTENTION_TEMPERATURE = 5.0
# While measuring the attention, the most elements of copied feature maps (each the map of a
# target image with one channel removed) that one forward pass holds: 256 MB in float32.
ABLATION_ELEMENTS = 2**26
# The probe input that tells the layers' channel counts (on the meta device: nothing is computed).
PROBE_SIZE = 224


def attention_from_scores(scores: Tensor) -> Tensor:
    """``softmax(standardized(scores) / 5)``; uniform when every channel scored the same."""
    spread = scores.std(unbiased=False)
    if not torch.isfinite(spread) or spread == 0:
        return torch.full_like(scores, 1.0 / len(scores))
    return torch.softmax((scores - scores.mean()) / spread / ATTENTION_TEMPERATURE, dim=0)


class DELTA(Regularizer):
    """DELTA (Li, Xiong, Wang, Rao, Liu, Chen & Huan, "DELTA: DEep Learning Transfer using
    Feature Map with Attention for Convolutional Networks", ICLR 2019, Eq. 5-7).

    ``L = L_ce + alpha * sum_i sum_l (C_l / (H_l W_l)) / 2 * sum_j a_lj ||FM_lj(w, x_i) -
    FM_lj(w0, x_i)||^2 + beta/2 * ||w_new||^2``: ``FM_lj`` is channel j (of ``C_l``, over
    ``H_l x W_l`` positions) of the feature map that layer l of ``layers`` outputs, with the
    fine-tuned weights ``w`` and with the frozen source model ``w0``, for image i of the batch
    (summed over the batch, as the authors' code does); ``a_l`` is layer l's channel attention
    (summing to 1, so ``C_l a_lj`` averages 1); ``w_new`` all the parameters of the new head.
    Defaults from the authors' code: ``alpha = beta = 0.01``. Like L2-SP, DELTA replaces weight
    decay (:attr:`replaces_weight_decay`): the authors train it without.

    The attention (:meth:`fit_to_target`, once before training) weighs each channel by how much
    removing it hurts the source classifier: for up to ``attention_images`` target training
    images (as evaluation sees them), the source model's cross-entropy against its own
    predicted classes with channel j of layer l set to 0, less the cross-entropy without that,
    averaged over the images; a layer's scores are standardized and ``a_l = softmax(score /
    5)`` (the authors' code). The paper measures the loss with the target labels through a new
    classifier trained first on the frozen source features; here the source model's own
    classifier and predictions stand in for it, so no extra training is needed.

    :meth:`attach` keeps a frozen copy of the backbone (``source``, always in eval mode) and
    one of the source classifier's path (``source_classifier``), as submodules, and the
    attention as persistent buffers ``attention_<layer with "." -> "__">``: all in the
    checkpoint, so a resumed run keeps them (doubling the backbone's share of the checkpoint).
    The fine-tuned backbone's feature maps are read by forward hooks during the step's own
    forward (with gradients enabled); the source model's by one more forward pass, without
    gradients, per step. Needs a meaningful source classifier for the attention, like LwF:
    ``model.weights=imagenet`` or a checkpoint with its source head.
    """

    replaces_weight_decay = True
    RULES = {
        "alpha": non_negative("regularizer.alpha"),
        "beta": non_negative("regularizer.beta"),
        "attention_images": integer("regularizer.attention_images", 1),
        "layers": LAYERS_RULE,
    }

    def __init__(
        self,
        layers: Sequence[str],
        alpha: float = 0.01,
        beta: float = 0.01,
        attention_images: int = 256,
    ) -> None:
        super().__init__()
        check(self.RULES, layers=layers, alpha=alpha, beta=beta, attention_images=attention_images)
        self.layers = [str(name) for name in layers]
        self.alpha, self.beta = float(alpha), float(beta)
        self.attention_images = int(attention_images)
        self.source: nn.Module | None = None
        self.source_classifier: nn.Module | None = None
        self._head: tuple[nn.Module] | None = None  # referenced, owned by the LightningModule
        self._maps: dict[str, Tensor] = {}  # the fine-tuned backbone's maps of this step
        self._source_maps: dict[str, Tensor] = {}
        self._removed: tuple[str, Tensor] | None = None  # (layer, channel mask) while measuring
        self._recording = False

    @staticmethod
    def buffer_name(layer: str) -> str:
        return "attention_" + layer.replace(".", "__")

    def attention(self, layer: str) -> Tensor:
        return getattr(self, self.buffer_name(layer))

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        source_classifier = require_source_classifier("DELTA", source_classifier)
        self._head = (head,)
        self.source = frozen(copy.deepcopy(backbone))
        self.source_classifier = frozen(source_head(head, source_classifier))
        for name in self.layers:
            live, source = _submodule(backbone, name), _submodule(self.source, name)
            live.register_forward_hook(self._keep_map(name))
            source.register_forward_hook(self._source_hook(name))
        dtype = next(self.source_classifier.parameters()).dtype
        for name, channels in self._channels().items():
            uniform = torch.full((channels,), 1.0 / channels, dtype=dtype)
            self.register_buffer(self.buffer_name(name), uniform, persistent=True)

    def _keep_map(self, name: str):
        def hook(module: nn.Module, inputs, output: Tensor) -> None:
            if torch.is_grad_enabled():  # a training forward: evaluation keeps nothing
                self._maps[name] = output

        return hook

    def _source_hook(self, name: str):
        def hook(module: nn.Module, inputs, output: Tensor) -> Tensor | None:
            if self._removed is not None and self._removed[0] == name:
                # (B, C, H, W) -> (K * B, C, H, W): copy k has the channels of mask row k.
                mask = self._removed[1].to(output.dtype)[:, None, :, None, None]
                return (output.unsqueeze(0) * mask).flatten(0, 1)
            if self._recording:
                self._source_maps[name] = output
            return None

        return hook

    def record_source_maps(self, images: Tensor, parameters: dict | None = None) -> dict:
        """The source model's feature maps of ``images`` (with ``parameters`` in place of its
        own, as :func:`torch.func.functional_call` takes them)."""
        assert self.source is not None
        self._recording, self._source_maps = True, {}
        try:
            with torch.no_grad():
                if parameters is None:
                    self.source(images)
                else:
                    torch.func.functional_call(self.source, parameters, (images,))
        finally:
            self._recording = False
        maps, self._source_maps = self._source_maps, {}
        return maps

    def _channels(self) -> dict[str, int]:
        """Each layer's channel count, from a forward pass on the meta device (no compute)."""
        assert self.source is not None
        probe = torch.empty(1, 3, PROBE_SIZE, PROBE_SIZE, device="meta")
        maps = self.record_source_maps(probe, on_meta(self.source))
        not_maps = [name for name in self.layers if maps[name].dim() != 4]
        if not_maps:
            raise ConfigError(
                f"regularizer.layers={self.layers}: {not_maps} output no (B, C, H, W) feature "
                "map; name convolutional layers or blocks of the backbone (model.feature_maps)"
            )
        return {name: maps[name].shape[1] for name in self.layers}

    def train(self, mode: bool = True) -> DELTA:
        super().train(mode)
        for module in (self.source, self.source_classifier):
            if module is not None:
                module.eval()
        return self

    def source_logits(self, images: Tensor) -> Tensor:
        assert self.source is not None and self.source_classifier is not None
        return at_least_float32(self.source_classifier(self.source(images)))

    @torch.no_grad()
    def fit_to_target(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Each layer's attention from the channel scores on the first ``attention_images``
        target training images."""
        images = _first_images(batches, self.attention_images)
        with evaluating(self.source, self.source_classifier):
            logits = self.source_logits(images)  # once for every layer
            predicted = logits.argmax(dim=-1)
            base = F.cross_entropy(logits, predicted, reduction="none")
            one_image = self.record_source_maps(images[:1])
            for name in self.layers:
                per_image = one_image[name][0].numel()
                scores = self.channel_scores(images, name, predicted, base, per_image)
                self.attention(name).copy_(attention_from_scores(scores))

    def channel_scores(
        self, images: Tensor, layer: str, predicted: Tensor, base: Tensor, per_image: int
    ) -> Tensor:
        """How much the source model's cross-entropy against its own predictions
        (``predicted``, with cross-entropy ``base``) grows when each channel of ``layer`` (of
        ``per_image`` elements per image) is set to 0, averaged over ``images``.

        The network runs up to ``layer`` on a group of images; there each image's map is
        copied, once per channel removed, and only the rest of the network runs on the copies
        (so after ``layer`` everything must depend on its output alone: no skip connection
        around it). Groups and channels per pass are as large as :data:`ABLATION_ELEMENTS`
        allows, so that the part before ``layer`` runs as few times as it can."""
        channels = len(self.attention(layer))
        group = min(len(images), max(1, ABLATION_ELEMENTS // (channels * per_image)))
        per_pass = min(channels, max(1, ABLATION_ELEMENTS // (group * per_image)))
        totals = base.new_zeros(channels)
        for start in range(0, len(images), group):
            rows = slice(start, start + group)
            for first in range(0, channels, per_pass):
                removed = torch.arange(first, min(first + per_pass, channels), device=base.device)
                losses = self.ablated_losses(images[rows], predicted[rows], layer, removed)
                totals[removed] += (losses - base[rows]).sum(dim=1)
        return totals / len(images)

    def ablated_losses(
        self, images: Tensor, predicted: Tensor, layer: str, removed: Tensor
    ) -> Tensor:
        """(channels removed, images): the cross-entropy against ``predicted`` with channel
        ``removed[k]`` of ``layer`` set to 0, for each k."""
        mask = torch.ones(len(removed), len(self.attention(layer)), device=images.device)
        mask[torch.arange(len(removed)), removed] = 0
        self._removed = (layer, mask)
        try:
            ablated = self.source_logits(images)
        except RuntimeError as err:
            raise ConfigError(
                f"regularizer.layers: DELTA measures the channels of {layer!r} on copies of its "
                f"output, which failed ({err}); name layers after which the network is a chain, "
                "e.g. a ResNet's stages or VGG's blocks (model.feature_maps)"
            ) from err
        finally:
            self._removed = None
        repeated = predicted.repeat(len(removed))
        losses = F.cross_entropy(ablated, repeated, reduction="none")
        return losses.view(len(removed), len(images))

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        if self._head is None or self.source is None:
            raise RuntimeError("DELTA.attach must run before the first step")
        maps, self._maps = self._maps, {}
        missing = [name for name in self.layers if name not in maps]
        if missing:
            raise RuntimeError(
                f"DELTA found no feature map of {missing} from this step: the backbone's forward "
                "must run with gradients enabled before the regularizer is called"
            )
        self.source.eval()
        source_maps = self.record_source_maps(step.inputs)
        distance = ce_loss.new_zeros((), dtype=torch.float32)
        for name in self.layers:
            fine_tuned, source = at_least_float32(maps[name]), at_least_float32(source_maps[name])
            channels, positions = fine_tuned.shape[1], fine_tuned.shape[2] * fine_tuned.shape[3]
            squared = (fine_tuned - source).pow(2).flatten(2).sum(dim=2)  # (B, C)
            weighted = (squared * self.attention(name).to(squared.dtype)).sum()
            distance = distance + 0.5 * channels / positions * weighted
        head_sq = sum(squared_norm(p) for p in self._head[0].parameters())
        term = self.alpha * distance + 0.5 * self.beta * head_sq
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "delta/feature_map_dist": distance.detach(),
            "delta/head_norm_sq": head_sq.detach(),
        }


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ConfigError(
            f"regularizer.layers: the backbone {type(model).__name__} has no module {name!r}; "
            "list module names of the backbone (model.feature_maps in conf/model/<name>.yaml)"
        ) from None


def _first_images(batches: Iterable[tuple[Tensor, Tensor]], count: int) -> Tensor:
    """The first ``count`` images of ``batches`` (fewer if there are fewer)."""
    kept, have = [], 0
    for images, _ in batches:
        kept.append(images[: count - have])
        have += len(kept[-1])
        if have >= count:
            break
    if not kept:
        raise ValueError("DELTA's channel attention needs target training images; none came")
    return torch.cat(kept)
