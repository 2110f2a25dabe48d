"""model.weights: random, torchvision state_dict files, checkpoints of earlier runs, errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from ptr_lightning.core.errors import WeightsError
from ptr_lightning.model.backbones import build_backbone_and_head
from ptr_lightning.run.train import train
from tests.conftest import compose_config


def model_cfg(arch="resnet18", weights=None):
    """The ``model`` node of ``model=torchvision model.arch=<arch>``, composed as the CLI does."""
    overrides = ["model=torchvision", f"model.arch={arch}", "model.imagenet_weights=IMAGENET1K_V1"]
    return compose_config([*overrides, f"model.weights={weights or 'null'}"]).model


def test_torchvision_state_dict_file_loads_everything_but_the_classifier(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    backbone, head, source_classifier = build_backbone_and_head(model_cfg(weights=str(path)), 7)
    torch.testing.assert_close(backbone.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(source_classifier.weight, source.fc.weight)
    assert isinstance(backbone.fc, torch.nn.Identity)
    assert head[-1].out_features == 7 and head[-1].in_features == 512


def test_vgg_feature_tensor_is_fc7_after_relu_and_head_is_dropout_plus_linear():
    cfg = compose_config(["model=vgg16", "model.weights=null"]).model
    with torch.device("meta"):
        backbone, head, _ = build_backbone_and_head(cfg, 5)
    assert isinstance(backbone.classifier[4], torch.nn.ReLU)
    assert all(isinstance(backbone.classifier[i], torch.nn.Identity) for i in (5, 6))
    assert isinstance(head[0], torch.nn.Dropout) and head[0].p == 0.5
    assert head[1].in_features == 4096 and head[1].out_features == 5


def test_checkpoint_of_a_source_run_initialises_the_target_backbone(make_cfg):
    source_cfg = make_cfg("dataset.classes=[0,1,2,3,4]", "trainer.max_epochs=1", out="source")
    train(source_cfg)
    ckpt = Path(source_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]

    target_cfg = make_cfg(f"model.weights={ckpt}", "dataset.classes=[5,6]", out="target")
    backbone, head, source_classifier = build_backbone_and_head(target_cfg.model, 2)
    torch.testing.assert_close(
        backbone.layer4[1].conv2.weight, state["backbone.layer4.1.conv2.weight"]
    )
    assert head[-1].out_features == 2  # fresh classifier for the target's classes
    torch.testing.assert_close(source_classifier.weight, state["head.0.weight"])
    metrics = train(target_cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        build_backbone_and_head(model_cfg(weights=str(tmp_path / "nope.pth")), 3)


def test_a_file_or_folder_that_holds_no_weights_is_named_with_what_to_give(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(WeightsError) as err:
        build_backbone_and_head(model_cfg(weights=str(text)), 3)
    assert f"model.weights='{text}' is not a PyTorch weights file" in str(err.value)
    assert "torchvision state_dict (.pth)" in str(err.value)

    truncated = tmp_path / "truncated.pth"
    torch.save(torchvision.models.resnet18().state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="cannot be read: it is truncated, damaged"):
        build_backbone_and_head(model_cfg(weights=str(truncated)), 3)

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "resnet18.pth").write_bytes(b"PK")
    with pytest.raises(WeightsError, match=r"is a folder \(it holds resnet18.pth\)"):
        build_backbone_and_head(model_cfg(weights=str(tmp_path / "folder")), 3)


def test_weights_of_another_backbone_list_mismatched_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(WeightsError) as err:
        build_backbone_and_head(model_cfg(arch="resnet50", weights=str(path)), 3)
    message = str(err.value)
    assert "missing" in message and "wrong shape" in message and "layer1.0.conv3.weight" in message


def test_imagenet_weights_offline_say_where_to_put_the_file(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError) as err:
        build_backbone_and_head(model_cfg(weights="imagenet"), 3)
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and "checkpoints" in message
    assert "model.weights=" in message


def timm_cfg(weights: str):
    """``model=timm`` with the tiny test_vit at 32x32 and ``weights``."""
    pytest.importorskip("timm")
    overrides = ["model=timm", "model.name=test_vit.r160_in1k", "+model.kwargs.img_size=32"]
    return compose_config([*overrides, "dataset.image_size=32", f"model.weights={weights}"]).model


def test_timm_pretrained_weights_offline_name_the_file_and_where_it_goes():
    with pytest.raises(WeightsError) as err:  # the tests run with HF_HUB_OFFLINE=1
        build_backbone_and_head(timm_cfg("pretrained"), 3)
    message = str(err.value)
    assert "huggingface.co/timm/test_vit.r160_in1k/resolve/main/model.safetensors" in message
    assert "model.weights=/path/to/model.safetensors" in message


def test_timm_weights_file_loads_through_timms_pretrained_config(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    source = timm.create_model("test_vit", img_size=32)
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    backbone, head, source_classifier = build_backbone_and_head(
        timm_cfg(tmp_path / "model.safetensors"), 3
    )
    torch.testing.assert_close(backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(source_classifier.weight, source.head.weight)
    assert isinstance(backbone.head, torch.nn.Identity) and head[-1].out_features == 3
    with pytest.raises(WeightsError, match="no such file"):
        build_backbone_and_head(timm_cfg(tmp_path / "nope.safetensors"), 3)
