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
            f"{', '.join(['DEFAULT', *weights.__members__])}"
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

    def build(self, model_cfg) -> tuple[nn.Module, str]:
        """The model with ``model.weights`` loaded, and its classifier's name."""
        arch = ARCH_RULE.check(model_cfg.arch)
        model = torchvision.models.get_model(arch, weights=None, **dict(model_cfg.kwargs or {}))
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

    def layer_ids(self, backbone: nn.Module, model_cfg) -> dict[str, int]:
        """Each backbone parameter's layer for layer-wise learning-rate decay, from the
        ``model.layers`` patterns; see :func:`layers_from_patterns`."""
        names = [name for name, _ in backbone.named_parameters()]
        return layers_from_patterns(names, list(model_cfg.layers or []))


def layers_from_patterns(names: Sequence[str], patterns: Sequence[str]) -> dict[str, int]:
    """Number the layers of parameters ``names``, first to last.

    The first of ``patterns`` (regular expressions, ``re.search``) that matches a name places it
    at the integers it captures (``^blocks\\.(\\d+)\\.`` gives one layer per block); layers are
    numbered in the order of those integers, and a name that no pattern matches belongs to one
    last layer (e.g. the final norm). Hand-written because timm's ``group_parameters``, which
    does the same with a model's own ``group_matcher``, is an optional dependency here.
    """
    if not patterns:
        raise ConfigError(
            "model.layer_decay needs model.layers: regular expressions that place the backbone's "
            "parameters in layers (the vit_b_16 and swin_t presets have them)"
        )
    compiled = [re.compile(pattern) for pattern in patterns]
    keys: dict[str, tuple[float, ...]] = {}
    for name in names:
        match = next((m for m in (c.search(name) for c in compiled) if m), None)
        numbers = match.groups() if match else (float("inf"),)
        keys[name] = tuple(float(n) for n in numbers if n is not None)
    order = {key: i for i, key in enumerate(sorted(set(keys.values())))}
    return {name: order[key] for name, key in keys.items()}
