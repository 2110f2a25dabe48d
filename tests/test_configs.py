"""Every dataset x model x regularizer config composes, resolves and builds its parts."""

from __future__ import annotations

import importlib.util
import itertools
from collections import Counter
from functools import partial

import pytest
import torch
from omegaconf import OmegaConf

from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.model.backbones import build_backbone_and_head
from ptr_lightning.regularizers import Regularizer
from ptr_lightning.run.build import build_components
from tests.conftest import compose_config, compose_with_hydra


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


PAPER_MODELS = ["resnet18", "resnet50", "resnet101", "vgg16", "vgg16_bn"]
HAS_TIMM = importlib.util.find_spec("timm") is not None
# What the generic routes need besides their option (a model's name).
MODEL_ARGS = {
    "torchvision": ["model.arch=mnasnet0_5"],
    "timm": ["model.name=test_vit.r160_in1k"],
}


def model_options(models: list[str]) -> list:
    """``models`` as parameters, ``timm`` skipped without the timm extra."""
    skip = pytest.mark.skipif(not HAS_TIMM, reason="timm extra")
    return [pytest.param(m, marks=[skip] if m == "timm" else []) for m in models]


def pairs() -> list[tuple[str, str, str]]:
    """Every pair of options of two groups, with the third group's default: a regularizer's
    config reads the model's keys (PtR's R and m, DELTA's layers) or the data set's (JointTrain's
    image size), never both, so pairs cover every interaction at a fraction of the product."""
    defaults = ("digits", "resnet18", "ptr")
    datasets, models, regularizers = options("dataset"), PAPER_MODELS, options("regularizer")
    combinations = {
        *((d, m, defaults[2]) for d, m in itertools.product(datasets, models)),
        *((defaults[0], m, r) for m, r in itertools.product(models, regularizers)),
        *((d, defaults[1], r) for d, r in itertools.product(datasets, regularizers)),
    }
    return sorted(combinations)


@pytest.mark.parametrize(("dataset", "model", "regularizer"), pairs())
def test_combination_composes(dataset, model, regularizer):
    cfg = compose_config(
        [
            f"dataset={dataset}",
            f"model={model}",
            f"regularizer={regularizer}",
            "paths.output_dir=/tmp/unused",
            "paths.source_root=/tmp/unused",  # JointTrain's source images (read later)
        ]
    )
    OmegaConf.resolve(cfg)
    components = build_components(cfg)  # each part checks its own settings
    assert isinstance(components.regularizer, Regularizer)
    assert components.datamodule.batch_size == cfg.dataset.batch_size >= 1


FAMILIES = [model for model in options("model") if model not in PAPER_MODELS]


@pytest.mark.parametrize("model", model_options(FAMILIES))
@pytest.mark.parametrize("dataset", ["digits", "flower102"])
def test_family_presets_compose_and_build_their_parts(dataset, model):
    cfg = compose_config(
        [f"dataset={dataset}", f"model={model}", *MODEL_ARGS.get(model, [])]
        + ["paths.output_dir=/tmp/unused"]
    )
    OmegaConf.resolve(cfg)
    components = build_components(cfg)
    assert components.regularizer.m_mode == cfg.model.ptr.m_mode == "features"
    assert components.datamodule.batch_size == cfg.dataset.batch_size >= 1
    # Each family is fine-tuned as its users do; the generic torchvision route as the paper.
    adamw = model != "torchvision"
    assert cfg.optimizer._target_ == ("torch.optim.AdamW" if adamw else "torch.optim.SGD")
    assert cfg.scheduler._target_.endswith("WarmupCosineLR" if adamw else "PaperPlateauLR")
    assert cfg.model.lr == (cfg.optimizer.lr_from_scratch if dataset == "digits" else cfg.model.lr)


@pytest.mark.parametrize("model", model_options(options("model")))
def test_model_config_names_a_real_feature_layer(model):
    overrides = [f"model={model}", *MODEL_ARGS.get(model, []), "dataset=flower102"]
    cfg = compose_config([*overrides, "model.weights=null", "paths.output_dir=/tmp/unused"])
    size = cfg.model.input.size  # the weights' input size (224; timm's test_vit: 160)
    maps = {}
    with torch.device("meta"):
        backbone, head, source = build_backbone_and_head(cfg.model, 3)
        for name in cfg.model.get("feature_maps") or []:  # DELTA's layers
            hook = partial(lambda name, module, inputs, output: maps.update({name: output}), name)
            backbone.get_submodule(name).register_forward_hook(hook)
        features = backbone(torch.empty(2, 3, size, size))
    assert features.shape == (2, head[-1].in_features) == (2, source.in_features)
    assert cfg.model.ptr.R > 0 and cfg.model.ptr.m >= 0 and cfg.model.weight_decay > 0
    assert cfg.dataset.crop == size
    assert list(maps) == list(cfg.model.get("feature_maps") or [])
    assert all(m.dim() == 4 and m.shape[0] == 2 for m in maps.values())  # (B, C, H, W)


def test_the_data_follows_the_models_input():
    imagenet = build_components(compose_config(["paths.output_dir=/tmp/unused"])).datamodule
    assert imagenet.train_transform.mean.flatten().tolist() == pytest.approx(
        [0.485 * 255, 0.456 * 255, 0.406 * 255]
    )
    if not HAS_TIMM:
        return
    timm = ["model=timm", "model.name=test_vit.r160_in1k", "paths.output_dir=/tmp/unused"]
    archive = compose_config(["dataset=flower102", *timm])
    transforms = build_components(archive).datamodule
    assert archive.dataset.crop == 160 and transforms.test_transform.crop == 160
    assert transforms.test_transform.normalize.std.flatten().tolist() == [127.5] * 3
    digits = compose_config(timm)  # the images are the model's input, whole
    assert digits.model.input.size == digits.dataset.image_size == 32
    assert (
        build_components(digits).datamodule.val_transform.normalize.mean.flatten().tolist()
        == [127.5] * 3
    )


def test_per_backbone_defaults_follow_the_paper():
    vgg = compose_config(["model=vgg16", "paths.output_dir=/tmp/unused"])
    resnet = compose_config(["model=resnet50", "paths.output_dir=/tmp/unused"])
    assert vgg.model.weight_decay == 5e-4 and resnet.model.weight_decay == 1e-4
    assert 3 <= vgg.regularizer.R <= 5 and 10 <= vgg.regularizer.m <= 15
    assert resnet.regularizer.R == 3 and resnet.regularizer.m == 1
    assert resnet.regularizer.T == 1.0 and resnet.regularizer.loss == "smooth_l1"
    l2 = compose_config(["regression=l2", "regularizer.R=5", "paths.output_dir=/tmp/unused"])
    assert l2.regularizer.loss == "l2" and l2.regularizer.R == 5


EXPERIMENTS = sorted(
    str(p.relative_to(CONFIG_DIR / "experiment").with_suffix(""))
    for p in (CONFIG_DIR / "experiment").rglob("*.yaml")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose_with_each_swept_value(experiment):
    params = compose_with_hydra([f"experiment={experiment}"]).hydra.sweeper.params
    assert params, "a paper preset is a multirun"
    for key, values in params.items():
        for value in str(values).split(","):
            job = compose_config(
                [
                    f"experiment={experiment}",
                    f"{key}={value}",
                    "paths.output_dir=/tmp/unused",
                    "paths.source_root=/tmp/unused",
                ]
            )
            assert job.model.arch in {"vgg16", "vgg16_bn", "resnet50", "resnet101", "resnet18"}
            # The paper's optimizer and schedule, as they were.
            assert job.optimizer._target_ == "torch.optim.SGD" and job.optimizer.momentum == 0.9
            assert job.scheduler._target_.endswith("PaperPlateauLR")
            build_components(job)


def test_table1_preset_is_the_papers_table():
    cfg = compose_config(
        [
            "experiment=paper/table1_vgg16",
            "method=ptr_l2",
            "dataset=stanford40",
            "paths.output_dir=/tmp/unused",
        ]
    )
    assert cfg.model.arch == "vgg16" and cfg.model.weight_decay == 5e-4
    assert cfg.dataset.batch_size == 20 and cfg.regularizer.loss == "l2"
    assert cfg.choices.regularizer == "ptr" and cfg.choices.regression == "l2"
    caltech = compose_config(
        ["experiment=paper/resnet101", "dataset=caltech256_30", "paths.output_dir=/tmp/unused"]
    )
    assert caltech.dataset.batch_size == 32 and caltech.model.arch == "resnet101"
    assert caltech.choices.regularizer == "none"


def test_slurm_preset_composes_the_submitit_launcher():
    cfg = compose_with_hydra(["cluster=slurm"])
    assert "SlurmLauncher" in cfg.hydra.launcher._target_
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_compare_regularizers_sweeps_l2sp_alpha_without_repeating_the_other_methods():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose_with_hydra(["experiment=compare_regularizers"])
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    # The job list exactly as Hydra's basic sweeper forms it (the product of the axes).
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    methods = Counter(dict(override.split("=", 1) for override in job)["method"] for job in jobs)
    assert len(jobs) == 60 and set(methods.values()) == {5}  # 12 methods x 5 seeds

    alphas = {}
    for method in methods:
        job = compose_config(
            ["experiment=compare_regularizers", f"method={method}", "paths.output_dir=/tmp/unused"]
        )
        if job.choices.regularizer == "l2sp":
            alphas[method] = job.regularizer.alpha
    assert sorted(alphas.values()) == [0.001, 0.01, 0.1]
    # ft, ptr_sml1, fnp, lwf, pairwise_confusion, bss, joint_train, delta, co_tuning
    assert len(methods) - len(alphas) == 9
