"""Split a torchvision classifier into (backbone -> feature tensor, head -> logits).

Which modules form the head is architecture knowledge and comes from ``conf/model/*.yaml``
(``head: [fc]`` for ResNets; ``head: [classifier.5, classifier.6]`` for VGG, so the feature
tensor is fc7 after its ReLU and the head is dropout + the last linear layer). The last head
module is a Linear layer that is always replaced by a fresh one for the target's classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from ptr_lightning.errors import ConfigError
from ptr_lightning.weights import load_pretrained


def split_classifier(
    model: nn.Module, head: Sequence[str], num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear]:
    """Return ``(backbone, head, source_classifier)``.

    The head modules are replaced by Identity in the backbone; the new head is the same modules
    with a fresh last Linear layer for ``num_classes``. The source classifier (e.g. ImageNet's
    1000-way layer) is returned for regularizers that use the source task (LwF).
    """
    modules = [model.get_submodule(name) for name in head]
    source_classifier = modules[-1]
    if not isinstance(source_classifier, nn.Linear):
        raise ConfigError(
            f"model.head must end with a Linear layer; {head[-1]!r} is a "
            f"{type(source_classifier).__name__}"
        )
    classifier = nn.Linear(source_classifier.in_features, num_classes)
    for name in head:
        model.set_submodule(name, nn.Identity())
    return model, nn.Sequential(*modules[:-1], classifier), source_classifier


def build_backbone_and_head(
    model_cfg, num_classes: int
) -> tuple[nn.Module, nn.Sequential, nn.Linear]:
    """Build ``model_cfg.arch`` from torchvision, load ``model_cfg.weights``, split it.

    Returns ``(backbone, head, source_classifier)`` as :func:`split_classifier` does.
    """
    arch = model_cfg.arch
    if arch not in torchvision.models.list_models(torchvision.models):
        raise ConfigError(
            f"model.arch={arch!r} is not a torchvision classification model; "
            "use one of conf/model/*.yaml (vgg16, vgg16_bn, resnet18, resnet50, resnet101)"
        )
    model = torchvision.models.get_model(arch, weights=None, **dict(model_cfg.get("kwargs") or {}))
    head_names = list(model_cfg.head)
    load_pretrained(model, model_cfg, classifier_name=head_names[-1])
    return split_classifier(model, head_names, num_classes)
