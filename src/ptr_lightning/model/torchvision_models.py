"""torchvision classification models (``model.library: torchvision``): built by name, their
ImageNet weights from torchvision, their input from the weights' own recipe."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torchvision
from torch import nn

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import Rule
from ptr_lightning.model.classifier import logits_layer
from ptr_lightning.model.weights import imagenet_state_dict, load_weights

ARCH_RULE = Rule(
    "model.arch",
    lambda v: v in torchvision.models.list_models(torchvision.models),
    "a torchvision classification model (torchvision.models.list_models()); with a preset "
    "(model=resnet50, vit_b_16, ...) or model=torchvision model.arch=<name>",
    kind="any",
)


def weights_enum(arch: str, name: str):
    """torchvision's weights ``name`` (e.g. ``IMAGENET1K_V1``, ``DEFAULT``) of ``arch``."""
    ARCH_RULE.check(arch)
    weights = torchvision.models.get_model_weights(arch)
    try:
        return weights[name]
    except KeyError:
        raise ConfigError(
            f"model.imagenet_weights={name!r} is not one of {arch}'s weights: "
            f"{', '.join(weights.__members__)}"
        ) from None


def input_spec(arch: str, weights_name: str, key: str):
    """``size``, ``mean`` or ``std`` of the images ``arch``'s weights were made for (their
    evaluation transform: crop size and normalization), read from torchvision's metadata, so
    nothing is downloaded. The ``ptr.torchvision_input`` resolver of ``model.input``."""
    recipe = weights_enum(arch, weights_name).transforms()
    spec = {"size": recipe.crop_size[0], "mean": list(recipe.mean), "std": list(recipe.std)}
    return spec[key]


class TorchvisionModels:
    """``model.library: torchvision``: ``torchvision.models.get_model(arch, **kwargs)``."""

    def check(self, model_cfg) -> None:
        ARCH_RULE.check(model_cfg.arch)
        if model_cfg.get("layer_decay") is not None and not model_cfg.get("layers"):
            raise ConfigError(
                "model.layer_decay needs model.layers: regular expressions that place the "
                "backbone's parameters in layers (the vit_b_16 and swin_t presets have them)"
            )
        for pattern in model_cfg.get("layers") or []:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(
                    f"model.layers: {pattern!r} is not a regular expression ({err})"
                ) from None

    def build(self, model_cfg) -> tuple[nn.Module, str]:
        """The model with ``model.weights`` loaded, and its classifier's name (its settings
        checked by :meth:`check` first)."""
        arch = model_cfg.arch
        kwargs = dict(model_cfg.get("kwargs") or {})
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
        classifier = logits_layer(model, model_cfg.input.size, what=f"model.arch={arch}")
        weights = model_cfg.weights
        if weights is not None and str(weights) == "imagenet":
            enum = weights_enum(arch, model_cfg.imagenet_weights)
            state = imagenet_state_dict(arch, enum)
            load_weights(model, state, classifier, source=f"torchvision {arch} {enum.name}")
        elif weights is not None:
            load_weights(model, str(weights), classifier)
        return model, classifier

    def detach_head(self, model: nn.Module, head: Sequence[str]) -> nn.Module:
        """The backbone: ``model`` with the head's modules replaced by Identity, so it returns
        the feature tensor."""
        for name in head:
            model.set_submodule(name, nn.Identity())
        return model

    def layer_depths(self, backbone: nn.Module, model_cfg) -> dict[str, int]:
        """Each backbone parameter's depth below the head, for layer-wise learning-rate decay,
        from the ``model.layers`` patterns (:func:`depths_from_patterns`)."""
        names = [name for name, _ in backbone.named_parameters()]
        depths = depths_from_patterns(names, list(model_cfg.layers or []))
        if not any(depths.values()):
            raise ConfigError(
                f"model.layers={list(model_cfg.layers or [])} match no parameter of the backbone "
                f"(e.g. {names[0]!r}): model.layer_decay would change nothing"
            )
        return depths


def depths_from_patterns(names: Sequence[str], patterns: Sequence[str]) -> dict[str, int]:
    """The depth below the head of each of the parameters ``names`` (BEiT's numbering).

    The first of ``patterns`` (regular expressions, ``re.search``) that matches a name places it
    in a layer, one per value of the integers it captures (``^blocks\\.(\\d+)\\.``: one layer per
    block); the layers, in the order of those integers, take depths n, ..., 1 (the last one just
    below the head). A name that no pattern matches (the final norm) learns with the head:
    depth 0. Hand-written because timm's ``group_parameters``, which places parameters with a
    model's own ``group_matcher``, is an optional dependency here.
    """
    compiled = [re.compile(pattern) for pattern in patterns]
    keys: dict[str, tuple[int, ...] | None] = {}
    for name in names:
        match = next((m for m in (c.search(name) for c in compiled) if m), None)
        keys[name] = None if match is None else tuple(int(n) for n in match.groups() if n)
    layers = sorted({key for key in keys.values() if key is not None})
    depth = {key: len(layers) - i for i, key in enumerate(layers)}
    return {name: 0 if key is None else depth[key] for name, key in keys.items()}
