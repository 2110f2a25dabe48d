"""Split a torchvision classifier into (backbone -> feature tensor, head -> logits).

Which modules form the head is architecture knowledge and comes from ``conf/model/*.yaml``
(``head: [fc]`` for ResNets; ``head: [classifier.5, classifier.6]`` for VGG, so the feature
tensor is fc7 after its ReLU and the head is dropout + the last linear layer). The last head
module is a Linear layer that is always replaced by a fresh one for the target's classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torchvision
from torch import nn

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import Rule, one_of
from ptr_lightning.model.weights import load_pretrained

log = logging.getLogger(__name__)

ARCH_RULE = Rule(
    "model.arch",
    lambda v: v in torchvision.models.list_models(torchvision.models),
    "a torchvision classification backbone; pick a model config: model=vgg16, vgg16_bn, "
    "resnet18, resnet50 or resnet101",
    kind="any",
)

COMPILE_RULE = one_of(
    "model.compile",
    {None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"},
    " (torch.compile's modes; null: eager)",
)


def last_linear(model: nn.Module, head: Sequence[str]) -> nn.Linear:
    """The head's last module, which must be the Linear layer the target's classifier replaces."""
    try:
        layer = model.get_submodule(head[-1])
    except AttributeError:
        raise ConfigError(
            f"model.head={list(head)}: {type(model).__name__} has no {head[-1]!r}"
        ) from None
    if not isinstance(layer, nn.Linear):
        raise ConfigError(
            f"model.head must end with a Linear layer; {head[-1]!r} is a {type(layer).__name__}"
        )
    return layer


def split_classifier(
    model: nn.Module, head: Sequence[str], num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear]:
    """Return ``(backbone, head, source_classifier)``.

    The head modules are replaced by Identity in the backbone; the new head is the same modules
    with a fresh last Linear layer for ``num_classes``. The source classifier (e.g. ImageNet's
    1000-way layer) is returned for regularizers that use the source task (LwF).
    """
    modules = [model.get_submodule(name) for name in head]
    source_classifier = last_linear(model, head)
    classifier = nn.Linear(source_classifier.in_features, num_classes)
    for name in head:
        model.set_submodule(name, nn.Identity())
    return model, nn.Sequential(*modules[:-1], classifier), source_classifier


def build_pretrained(model_cfg) -> nn.Module:
    """``model_cfg.arch`` from torchvision with ``model_cfg.weights`` loaded, not yet split.

    Needs no data, so a missing weights file fails before any image is decoded.
    """
    arch = ARCH_RULE.check(model_cfg.arch)
    model = torchvision.models.get_model(arch, weights=None, **dict(model_cfg.get("kwargs") or {}))
    head = list(model_cfg.head)
    last_linear(model, head)
    load_pretrained(model, model_cfg, classifier_name=head[-1])
    return model


def build_backbone_and_head(
    model_cfg, num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear]:
    """Build and split ``model_cfg``: ``(backbone, head, source_classifier)`` as
    :func:`split_classifier` returns them."""
    return split_classifier(build_pretrained(model_cfg), list(model_cfg.head), num_classes)


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
