"""Every dataset x model x regularizer config composes, resolves and passes the checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ptr_lightning.backbones import build_backbone_and_head
from ptr_lightning.config_checks import check_config
from ptr_lightning.paths import CONFIG_DIR
from ptr_lightning.regularizers import Regularizer
from tests.conftest import compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("dataset", "model", "regularizer"),
    list(itertools.product(options("dataset"), options("model"), options("regularizer"))),
)
def test_combination_composes(dataset, model, regularizer):
    cfg = compose_config(
        [
            f"dataset={dataset}",
            f"model={model}",
            f"regularizer={regularizer}",
            "paths.output_dir=/tmp/unused",
        ]
    )
    OmegaConf.resolve(cfg)
    check_config(cfg)
    assert isinstance(instantiate(cfg.regularizer), Regularizer)
    assert cfg.dataset.batch_size >= 1


@pytest.mark.parametrize("model", options("model"))
def test_model_config_names_a_real_feature_layer(model):
    cfg = compose_config([f"model={model}", "model.weights=null", "paths.output_dir=/tmp/unused"])
    with torch.device("meta"):
        backbone, head, source = build_backbone_and_head(cfg.model, 3)
        features = backbone(torch.empty(2, 3, 224, 224))
    assert features.shape == (2, head[-1].in_features) == (2, source.in_features)
    assert cfg.model.ptr.R > 0 and cfg.model.ptr.m >= 0 and cfg.model.weight_decay > 0


def test_per_backbone_defaults_follow_the_paper():
    vgg = compose_config(["model=vgg16", "paths.output_dir=/tmp/unused"])
    resnet = compose_config(["model=resnet50", "paths.output_dir=/tmp/unused"])
    assert vgg.model.weight_decay == 5e-4 and resnet.model.weight_decay == 1e-4
    assert 3 <= vgg.regularizer.R <= 5 and 10 <= vgg.regularizer.m <= 15
    assert resnet.regularizer.R == 3 and resnet.regularizer.m == 1
    assert resnet.regularizer.T == 1.0 and resnet.regularizer.loss == "smooth_l1"
    l2 = compose_config(["regression=l2", "regularizer.R=5", "paths.output_dir=/tmp/unused"])
    assert l2.regularizer.loss == "l2" and l2.regularizer.R == 5
