"""Model families: every preset and the generic routes (torchvision, timm) regularize the input of
the model's own classifier, and the paper's five backbones keep the feature layer they had."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from ptr_lightning.core import names
from ptr_lightning.core.tensors import evaluating
from ptr_lightning.model.backbones import (
    build_backbone_and_head,
    build_pretrained,
    head_modules,
    layer_depths,
)
from ptr_lightning.model.optimizer import OptimizerSettings, parameter_groups
from ptr_lightning.regularizers import StepTensors
from ptr_lightning.run.build import build_module
from ptr_lightning.run.train import train
from tests.conftest import compose_config
from tests.fixtures.run_folders import learning_rates

# Every family preset and both generic routes, on the TINY digits (16x16; ConvNeXt needs 32x32).
TIMM_VIT = ["model=timm", "model.name=test_vit"]
ROUTES = {
    "convnext_tiny": ["model=convnext_tiny", "dataset.image_size=32"],
    "efficientnet_b0": ["model=efficientnet_b0"],
    "mobilenet_v3_large": ["model=mobilenet_v3_large"],
    "vit_b_16": ["model=vit_b_16"],
    "swin_t": ["model=swin_t"],
    "torchvision": ["model=torchvision", "model.arch=mnasnet0_5"],
    "timm_vit": [*TIMM_VIT, "+model.kwargs.img_size=16"],  # built for 16x16
    "timm_convnext": ["model=timm", "model.name=test_convnext.r160_in1k", "dataset.image_size=32"],
}


def needs_timm(route: str) -> list[pytest.MarkDecorator]:
    if "timm" not in route:
        return []
    return [pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm extra")]


@pytest.mark.parametrize("route", [pytest.param(r, marks=needs_timm(r)) for r in ROUTES])
def test_the_regularized_tensor_is_the_input_of_the_models_classifier(make_cfg, route):
    cfg = make_cfg(*ROUTES[route])
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    images = datamodule.train_transform(images)
    pretrained = build_pretrained(cfg.model)  # random weights: digits sets model.weights=null
    model = pretrained.model
    # What the unsplit model feeds its head (the classifier, or the dropout before it).
    first = model.get_submodule(head_modules(model, cfg.model.head, pretrained.classifier)[0])
    head_input = []
    hook = first.register_forward_pre_hook(lambda _module, args: head_input.append(args[0]))
    with evaluating(model):  # with gradients, as in training (MultiheadAttention's fast path
        model(images)  # without them rounds differently)
    hook.remove()

    module = build_module(cfg, datamodule, pretrained=pretrained)
    regularized = []
    module.regularizer.register_forward_pre_hook(
        lambda _module, args: regularized.append(args[1].features.detach())
    )
    module.eval()  # no dropout or drop-path: the numbers of the unsplit model in eval mode
    optimizer = module.configure_optimizers()["optimizer"]
    for on in (False, True):  # off: the features' mean is measured (m_mode); on: a PtR step
        module.regularizer.switch(on, epoch=0)
        features, logits = module(images)
        ce = F.cross_entropy(logits, labels)
        total, stats = module.regularizer(ce, StepTensors(images, features, logits, labels))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    assert torch.equal(regularized[0], head_input[0])
    assert regularized[0].shape == (len(labels), module.head[-1].in_features)
    assert module.head[-1].out_features == datamodule.num_classes == 3
    assert float(stats["ptr/w"]) > 0 and total.item() > ce.item()


# The head of each of the paper's backbones as its config named it before the classifier was
# found from the model: the feature tensor is the first module's input.
PAPER_HEADS = {
    "resnet18": ["fc"],
    "resnet50": ["fc"],
    "resnet101": ["fc"],
    "vgg16": ["classifier.5", "classifier.6"],
    "vgg16_bn": ["classifier.5", "classifier.6"],
}


@pytest.mark.parametrize("preset", list(PAPER_HEADS))
def test_the_papers_backbones_keep_their_feature_layer(preset):
    cfg = compose_config([f"model={preset}", "model.weights=null", "dataset=flower102"])
    assert cfg.model.input.size == 224 and cfg.dataset.crop == 224
    with torch.device("meta"):
        pretrained = build_pretrained(cfg.model)
        names = head_modules(pretrained.model, cfg.model.head, pretrained.classifier)
        old_config = head_modules(pretrained.model, PAPER_HEADS[preset], pretrained.classifier)
        backbone, head, source = build_backbone_and_head(cfg.model, 5)
    assert names == old_config == PAPER_HEADS[preset]
    assert all(isinstance(backbone.get_submodule(name), nn.Identity) for name in names)
    assert source.out_features == 1000 and head[-1].in_features == source.in_features


def vit_depth(name: str) -> int:
    """Depth below the head of a torchvision ViT-B/16 parameter (BEiT's numbering): the final
    LayerNorm 0 (with the head), encoder_layer_k 12 - k, the embeddings 13."""
    if name.startswith(("conv_proj.", "class_token", "encoder.pos_embedding")):
        return 13
    if name.startswith("encoder.layers.encoder_layer_"):
        return 12 - int(name.split(".")[2].rsplit("_", 1)[1])
    return 0


@pytest.mark.parametrize(
    ("overrides", "depths"),
    [
        (["model=vit_b_16"], range(14)),
        # the final norm with the head; 2 + 2 + 6 + 2 blocks, 3 patch mergings, the stem
        (["model=swin_t"], range(17)),
        # timm's layers of its ViT: patch embedding, blocks 0-4, block 5 with the final norm
        pytest.param(
            ["model=timm", "model.name=test_vit", "+model.kwargs.img_size=16"],
            range(1, 8),
            marks=needs_timm("timm"),
        ),
    ],
)
def test_layer_wise_decay_gives_each_layer_its_rate(overrides, depths):
    cfg = compose_config([*overrides, "model.layer_decay=0.5", "dataset.image_size=16"])
    with torch.device("meta"):
        backbone, head, _ = build_backbone_and_head(cfg.model, 3)
    by_name = layer_depths(backbone, cfg.model)
    assert sorted(set(by_name.values())) == list(depths)
    if cfg.model.arch == "vit_b_16":
        assert by_name == {name: vit_depth(name) for name, _ in backbone.named_parameters()}
    settings = OptimizerSettings(lr=1.0, head_lr_mult=10.0, layer_decay=0.5)
    groups = parameter_groups(settings, backbone, head, [], by_name)
    rates = {group["name"]: group["lr"] for group in groups}
    assert rates["head"] == 10.0 and rates[f"backbone.depth{max(depths)}"] == 0.5 ** max(depths)
    assert rates.get("backbone", 1.0) == 1.0  # depth 0 (the final norm) learns at model.lr
    in_groups = sum(len(group["params"]) for group in groups)
    assert in_groups == len(list(backbone.parameters())) + len(list(head.parameters()))


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm extra")
def test_a_timm_vit_fine_tunes_with_adamw_warm_up_cosine_and_layer_decay(make_cfg):
    cfg = make_cfg(
        *ROUTES["timm_vit"],
        "model.layer_decay=0.5",
        "scheduler.interval=step",
        "scheduler.warmup=2",
        "trainer.max_epochs=2",
        "regularizer.T=100",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert metrics["ptr_switch_epoch"] == 0 and 0.0 <= metrics["test/acc"] <= 1.0
    # 3 steps an epoch, 6 in all: 2 of warm-up from 0.01, then the cosine from step 2.
    lr, after_epoch = cfg.model.lr, (1 + math.cos(math.pi / 4)) / 2
    assert learning_rates(run, "head") == pytest.approx([0.01 * lr, after_epoch * lr])
    deepest = [0.01 * lr * 0.5**7, after_epoch * lr * 0.5**7]  # the patch embedding
    assert learning_rates(run, "backbone.depth7") == pytest.approx(deepest)
    groups = torch.load(run / names.LAST_CHECKPOINT, weights_only=True)["optimizer_states"][0]
    assert all(tuple(group["betas"]) == (0.9, 0.999) for group in groups["param_groups"])
