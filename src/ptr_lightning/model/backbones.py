"""Split a classifier into (backbone -> feature tensor, head -> logits), for any library.

The classifier, the Linear layer whose output is the logits, is found from the model (torchvision:
:func:`ptr_lightning.model.classifier.logits_layer`; timm: ``get_classifier()``), not written
per architecture. Which modules sit between the feature tensor and it is architecture knowledge
and comes from ``conf/model/*.yaml`` (``head: [classifier.5]`` for VGG, so the feature tensor is
fc7 after its ReLU and the head is dropout + the classifier). The classifier is always replaced
by a fresh Linear layer for the target's classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import one_of
from ptr_lightning.model.classifier import run_on_meta
from ptr_lightning.model.timm_models import TimmModels
from ptr_lightning.model.torchvision_models import TorchvisionModels

log = logging.getLogger(__name__)

LIBRARIES = {"torchvision": TorchvisionModels(), "timm": TimmModels()}
LIBRARY_RULE = one_of("model.library", LIBRARIES, " (where the model comes from)")

COMPILE_RULE = one_of(
    "model.compile",
    {None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"},
    " (torch.compile's modes; null: eager)",
)


def library(model_cfg):
    """The library ``model.library`` names: it builds, splits and layers its models."""
    return LIBRARIES[LIBRARY_RULE.check(model_cfg.library)]


def check_model(model_cfg) -> None:
    """What can be checked of ``model_cfg`` without building it (its names)."""
    library(model_cfg).check(model_cfg)
    COMPILE_RULE.check(model_cfg.get("compile"))


@dataclass
class Pretrained:
    """A model with its weights loaded, not yet split, and the name of its classifier."""

    model: nn.Module
    classifier: str


def build_pretrained(model_cfg) -> Pretrained:
    """``model_cfg``'s model with ``model_cfg.weights`` loaded, not yet split.

    Needs no data, so a missing weights file fails before any image is decoded.
    """
    model, classifier = library(model_cfg).build(model_cfg)
    return Pretrained(model, classifier)


def head_modules(model: nn.Module, head: Sequence[str], classifier: str) -> list[str]:
    """The head's module names in forward order: ``model.head``, then the classifier (which
    ``model.head`` may name as its last, as configs before it was found did)."""
    names = [name for name in head if name != classifier]
    for name in names:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise ConfigError(
                f"model.head={list(head)}: {type(model).__name__} has no {name!r}"
            ) from None
    return [*names, classifier]


def split_classifier(
    pretrained: Pretrained, model_cfg, num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear | None]:
    """Return ``(backbone, head, source_classifier)``.

    The backbone returns the feature tensor (the library removes the head from the model);
    the new head is the head's modules with a fresh classifier for ``num_classes``. The source
    classifier (e.g. ImageNet's 1000-way layer) is returned for regularizers that use the
    source task (LwF); ``None`` when the weights have none (timm's ``num_classes=0`` ones).
    """
    model = pretrained.model
    names = head_modules(model, list(model_cfg.head or []), pretrained.classifier)
    modules = [model.get_submodule(name) for name in names]
    source = modules[-1] if isinstance(modules[-1], nn.Linear) else None
    if source is not None:
        classifier = nn.Linear(source.in_features, num_classes)
    backbone = library(model_cfg).detach_head(model, names)
    if source is None:
        features = run_on_meta(backbone, model_cfg.input.size, what=str(model_cfg.arch))[""]
        classifier = nn.Linear(features.shape[-1], num_classes)
    return backbone, nn.Sequential(*modules[:-1], classifier), source


def build_backbone_and_head(
    model_cfg, num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear | None]:
    """Build and split ``model_cfg``: ``(backbone, head, source_classifier)`` as
    :func:`split_classifier` returns them."""
    return split_classifier(build_pretrained(model_cfg), model_cfg, num_classes)


def layer_depths(backbone: nn.Module, model_cfg) -> dict[str, int] | None:
    """Each backbone parameter's depth below the head (0: learns with the head, 1: the layer
    just below it, ...) when ``model.layer_decay`` is set."""
    if model_cfg.get("layer_decay") is None:
        return None
    return library(model_cfg).layer_depths(backbone, model_cfg)


def prepare_to_run(backbone: nn.Module, head: nn.Module, model_cfg) -> None:
    """``model.channels_last`` and ``model.compile``, in place.

    The backbone and the head are compiled as two graphs (``nn.Module.compile``, which keeps
    their parameter names): the feature tensor between them stays an ordinary tensor of the
    step, so the pseudo-task can take the cross-entropy's gradient at it; compiling the whole
    training step would break that ``autograd.grad``.
    """
    mode = model_cfg.get("compile")  # checked with the other settings (run/build.py)
    if model_cfg.get("channels_last"):
        backbone.to(memory_format=torch.channels_last)
    if mode is not None:
        log.info(
            "model.compile=%s: compiling the backbone and the head as their first steps run "
            "(a minute or more before training speeds up)",
            mode,
        )
        backbone.compile(mode=mode)
        head.compile(mode=mode)
