"""JointTrain, DELTA and Co-Tuning against direct computations of their formulas, on tiny models
and hand-made batches; their state in the state_dict; what they refuse."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.testing import assert_close

from ptr_lightning.core.errors import ConfigError, DatasetError
from ptr_lightning.data.source_images import SourceImages
from ptr_lightning.data.transforms import Normalize
from ptr_lightning.regularizers import (
    DELTA,
    CoTuning,
    JointTraining,
    StepTensors,
    TrainingData,
)
from ptr_lightning.regularizers import delta as delta_module
from tests.regularizers.test_regularizers import DT, step_for, tiny_model

# --- Co-Tuning ---------------------------------------------------------------------------------


def test_co_tuning_relationship_is_the_mean_source_prediction_of_each_target_class():
    backbone, head, source = tiny_model()
    reg = CoTuning()
    reg.attach(backbone, head, source)
    inputs = torch.randn(7, 4, dtype=DT)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    reg.fit_to_target([(inputs[:4], labels[:4]), (inputs[4:], labels[4:])])

    backbone.eval()  # the source model predicts in eval mode
    probs = torch.softmax(source(backbone(inputs)), dim=-1).detach()
    expected = torch.stack([probs[labels == c].mean(dim=0) for c in (0, 1)])
    assert reg.relationship.shape == (2, 5)  # target classes x source classes
    assert_close(reg.relationship, expected)
    assert_close(reg.relationship.sum(dim=1), torch.ones(2, dtype=DT))


def test_co_tuning_keeps_the_callers_modes_and_a_uniform_row_for_an_unseen_class():
    backbone, head, source = tiny_model()
    reg = CoTuning()
    reg.attach(backbone, head, source)
    backbone.train()
    reg.train()
    reg.fit_to_target([(torch.randn(3, 4, dtype=DT), torch.tensor([0, 0, 0]))])
    assert backbone.training and reg.source_head.training
    assert_close(reg.relationship[1], torch.full((5,), 0.2, dtype=DT))


def test_co_tuning_value_and_gradient():
    backbone, head, source = tiny_model()
    reg = CoTuning(weight=2.3)
    reg.attach(backbone, head, source)
    reg.fit_to_target([(torch.randn(6, 4, dtype=DT), torch.tensor([0, 1, 0, 1, 0, 1]))])
    reg.eval()  # dropout before the source classifier off, for a deterministic reference
    inputs, labels = torch.randn(5, 4, dtype=DT), torch.tensor([1, 0, 0, 1, 1])
    features = backbone(inputs).detach().requires_grad_(True)
    step = StepTensors(inputs, features, head(features), labels)
    total, stats = reg(torch.tensor(0.5, dtype=DT), step)

    w, b = reg.source_head[-1].weight.detach(), reg.source_head[-1].bias.detach()
    q = torch.softmax(features.detach() @ w.T + b, dim=-1)
    r = reg.relationship[labels]
    kl = (r * (r.log() - q.log())).sum(dim=-1).mean()
    assert_close(stats["co_tuning/kl"], kl)
    assert_close(total, 0.5 + 2.3 * kl)
    assert_close(stats["train/reg_loss"], 2.3 * kl)

    total.backward()
    dz = 2.3 * (q - r) / 5  # d KL / d logits of the source head
    assert_close(features.grad, dz @ w)
    assert_close(reg.source_head[-1].weight.grad, dz.T @ features.detach())
    trainable = {id(p) for p in reg.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in reg.source_head.parameters()}


def test_co_tuning_relationship_is_in_the_state_dict():
    backbone, head, source = tiny_model()
    reg = CoTuning()
    reg.attach(backbone, head, source)
    reg.fit_to_target([(torch.randn(4, 4, dtype=DT), torch.tensor([0, 1, 0, 1]))])
    fresh = CoTuning()
    fresh.attach(*tiny_model(seed=1))
    assert not torch.equal(fresh.relationship, reg.relationship)
    fresh.load_state_dict(reg.state_dict())
    assert_close(fresh.relationship, reg.relationship)
    assert "source_head.1.weight" in reg.state_dict()


# --- DELTA -------------------------------------------------------------------------------------


def conv_model() -> tuple[nn.Sequential, nn.Sequential, nn.Linear]:
    """A backbone whose layer "1" outputs 3 channels, each the ReLU of a copy of the image's
    mean colour, and a source classifier that reads channel 0 strongly, channel 1 weakly and
    channel 2 not at all: the channels' importance is known."""
    backbone = nn.Sequential(
        nn.Conv2d(3, 3, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).to(DT)
    with torch.no_grad():
        backbone[0].weight.fill_(1 / 3)
    head = nn.Sequential(nn.Linear(3, 2)).to(DT)
    source = nn.Linear(3, 2).to(DT)
    with torch.no_grad():
        source.weight.copy_(torch.tensor([[2.0, 0.5, 0.0], [-2.0, -0.5, 0.0]]))
        source.bias.copy_(torch.tensor([-1.0, 1.0]))
    return backbone, head, source


@pytest.mark.parametrize("budget", [None, 40], ids=["one pass", "a channel and an image a pass"])
def test_delta_attention_follows_how_much_removing_a_channel_hurts_the_source_classifier(
    budget, monkeypatch
):
    if budget is not None:  # less than one image's map of the layer (3 x 4 x 4)
        monkeypatch.setattr(delta_module, "ABLATION_ELEMENTS", budget)
    backbone, head, source = conv_model()
    reg = DELTA(layers=["1"], attention_images=5)
    reg.attach(backbone, head, source)
    torch.manual_seed(0)
    images = torch.rand(6, 3, 4, 4, dtype=DT) * 2  # mean colours 0..2: both classes predicted
    reg.fit_to_target([(images[:3], torch.zeros(3)), (images[3:], torch.zeros(3))])

    # Direct: the source classifier on the pooled channels, channel j zeroed, on the first 5.
    pooled = torch.relu(images[:5].mean(dim=(1, 2, 3)))[:, None].expand(5, 3)
    predicted = source(pooled).argmax(dim=-1)
    base = F.cross_entropy(source(pooled), predicted)
    scores = []
    for j in range(3):
        kept = pooled.clone()
        kept[:, j] = 0
        scores.append(F.cross_entropy(source(kept), predicted) - base)
    scores = torch.stack(scores).detach()
    assert scores[0] > scores[1] > 0 and scores[2] == 0
    standardized = (scores - scores.mean()) / scores.std(unbiased=False)
    assert_close(reg.attention("1"), torch.softmax(standardized / 5, dim=0))
    assert reg.attention("1")[0] > reg.attention("1")[1] > reg.attention("1")[2]


def test_delta_value_and_gradient():
    backbone, head, source = conv_model()
    reg = DELTA(layers=["0", "1"], alpha=0.3, beta=0.05)
    reg.attach(backbone, head, source)
    w0 = backbone[0].weight.detach().clone()
    attention = {"0": torch.tensor([0.5, 0.3, 0.2], dtype=DT), "1": torch.tensor([0.1, 0.1, 0.8])}
    for name, value in attention.items():
        reg.attention(name).copy_(value)
    with torch.no_grad():
        backbone[0].weight.add_(0.2 * torch.randn_like(w0))
    images = torch.randn(4, 3, 2, 3, dtype=DT)
    total, stats = reg(torch.tensor(0.1, dtype=DT), step_for(backbone, head, images))

    def direct():
        fine_tuned = F.conv2d(images, backbone[0].weight)
        source_map = F.conv2d(images, w0)
        maps = {"0": (fine_tuned, source_map), "1": (fine_tuned.relu(), source_map.relu())}
        distance = 0
        for name, (a, b) in maps.items():
            sq = ((a - b) ** 2).sum(dim=(2, 3))  # (B, C)
            distance = distance + 0.5 * 3 / 6 * (sq * attention[name].to(DT)).sum()
        head_sq = sum((p**2).sum() for p in head.parameters())
        return distance, head_sq, 0.3 * distance + 0.05 / 2 * head_sq

    distance, head_sq, expected = direct()
    assert_close(total, 0.1 + expected.detach())
    assert_close(stats["delta/feature_map_dist"], distance.detach())
    assert_close(stats["delta/head_norm_sq"], head_sq.detach())
    total.backward()
    grads = [p.grad.clone() for p in [*backbone.parameters(), *head.parameters()]]
    backbone.zero_grad(), head.zero_grad()
    direct()[2].backward()
    for got, want in zip(grads, [*backbone.parameters(), *head.parameters()], strict=True):
        assert_close(got, want.grad)
    assert all(p.grad is None for p in reg.source.parameters())


def test_delta_source_copy_and_attention_are_frozen_state_in_the_state_dict():
    backbone, head, source = conv_model()
    reg = DELTA(layers=["1"])
    reg.attach(backbone, head, source)
    reg.fit_to_target([(torch.rand(4, 3, 4, 4, dtype=DT) * 2, torch.zeros(4))])
    nn.ModuleDict({"b": backbone, "r": reg}).train()
    assert not any(m.training for m in [*reg.source.modules(), *reg.source_classifier.modules()])
    assert not any(p.requires_grad for p in reg.parameters())
    assert reg.replaces_weight_decay
    state = copy.deepcopy(reg.state_dict())
    assert {"attention_1", "source.0.weight", "source_classifier.0.weight"} <= set(state)

    fresh_backbone, fresh_head, fresh_source = conv_model()
    with torch.no_grad():
        fresh_backbone[0].weight.mul_(3.0)
    fresh = DELTA(layers=["1"])
    fresh.attach(fresh_backbone, fresh_head, fresh_source)
    fresh.load_state_dict(state)
    for name, value in state.items():
        assert_close(fresh.state_dict()[name], value)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["5"], r"regularizer.layers: .* has no module '5'"),
        (["3"], r"\['3'\] output no \(B, C, H, W\) feature map"),
        (None, r"regularizer.layers=None .* model.feature_maps"),
    ],
)
def test_delta_refuses_layers_that_are_no_feature_maps(layers, message):
    with pytest.raises(ConfigError, match=message):
        DELTA(layers=layers).attach(*conv_model())


@pytest.mark.parametrize("regularizer", [DELTA(layers=["1"]), CoTuning()], ids=["delta", "co"])
def test_source_model_regularizers_need_the_source_classifier(regularizer):
    backbone, head, _ = conv_model()
    with pytest.raises(ConfigError, match="source_classifier.*model.weights"):
        regularizer.attach(backbone, head, None)


# --- JointTrain --------------------------------------------------------------------------------

COLOURS = {"cat": [(250, 0, 0), (200, 0, 0), (150, 0, 0)], "dog": [(0, 250, 0), (0, 200, 0)]}


@pytest.fixture
def source_folder(tmp_path) -> Path:
    """An image folder of 2 classes, 5 one-colour 8x8 PNGs (a colour says which image it is)."""
    for name, colours in COLOURS.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (8, 8), colour).save(tmp_path / "train" / name / f"{i}.png")
    return tmp_path


def test_source_batches_cycle_through_every_image_in_an_order_seeded_by_the_run(source_folder):
    images = SourceImages(root=str(source_folder), image_size=8, decode_workers=0)
    images.setup()
    drawn = [images.batch(step, 3, seed=7) for step in range(10)]  # 30 positions: 6 passes
    red = torch.cat([x[:, 0, 0, 0] for x, _ in drawn])  # identifies the image
    labels = torch.cat([y for _, y in drawn])
    for p in range(6):
        assert sorted(red[5 * p : 5 * p + 5].tolist()) == [0, 0, 150, 200, 250]
    assert ((red > 0) == (labels == 0)).all()  # the reds are the cats
    assert len({tuple(red[5 * p : 5 * p + 5].tolist()) for p in range(6)}) > 1  # reshuffled
    again = images.batch(4, 3, seed=7)
    assert torch.equal(again[0], drawn[4][0]) and torch.equal(again[1], drawn[4][1])
    other = torch.cat([images.batch(step, 3, seed=8)[0][:, 0, 0, 0] for step in range(10)])
    assert not torch.equal(other, red)


def joint_model():
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).to(DT)
    return backbone, nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3)).to(DT), nn.Linear(4, 2).to(DT)


def test_joint_train_value_and_gradient(source_folder):
    source = partial(SourceImages, image_size=8, decode_workers=0)
    reg = JointTraining(source_root=str(source_folder), source=source, weight=0.7, batch_size=4)
    backbone, head, classifier = joint_model()
    reg.attach(backbone, head, classifier)
    transform = Normalize()
    reg.on_fit_start(TrainingData(lambda: iter(()), transform.to(DT)))
    reg.eval()
    step = StepTensors(torch.zeros(1, 3, 8, 8, dtype=DT), *[torch.zeros(1)] * 3, global_step=5)
    total, stats = reg(torch.tensor(0.25, dtype=DT), step)
    grads = torch.autograd.grad(total, list(backbone.parameters()))

    images, labels = reg.source.batch(5, 4, seed=0)
    w, b = reg.source_head[-1].weight, reg.source_head[-1].bias
    source_ce = F.cross_entropy(backbone(transform(images).to(DT)) @ w.T + b, labels)
    assert_close(total, 0.25 + 0.7 * source_ce)
    assert_close(stats["joint_train/source_ce"], source_ce.detach())
    wanted = torch.autograd.grad(0.7 * source_ce, list(backbone.parameters()))
    for got, want in zip(grads, wanted, strict=True):
        assert_close(got, want)
    trainable = {id(p) for p in reg.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in reg.source_head.parameters()}


def test_joint_train_refuses_no_source_folder_naming_the_key(tmp_path):
    source = partial(SourceImages, image_size=8)
    with pytest.raises(ConfigError, match=r"regularizer.source_root=None .* paths.source_root"):
        JointTraining(source_root=None, source=source)
    reg = JointTraining(source_root=str(tmp_path / "nowhere"), source=source)
    missing = r"(?s)regularizer.source_root=.*nowhere.*train/ folder not found"
    with pytest.raises(DatasetError, match=missing):
        reg.attach(*joint_model())


def test_joint_train_refuses_a_source_head_that_does_not_match_the_classes(source_folder):
    reg = JointTraining(source_root=str(source_folder), source=partial(SourceImages, image_size=8))
    backbone, head, _ = joint_model()
    with pytest.raises(ConfigError, match=r"holds 2 classes \(cat, dog\) .* has 5 outputs"):
        reg.attach(backbone, head, nn.Linear(4, 5))
    assert reg.source.images is None  # nothing decoded
