"""timm models (``model.library: timm``, the optional extra ``ptr-lightning[timm]``).

Built with timm's own API: ``timm.create_model(name, pretrained=...)`` loads the weights its
pretrained config names (the Hugging Face hub or its cache, or a local file through
``pretrained_cfg_overlay``); ``get_classifier()`` is the classifier and ``reset_classifier(0)``
makes the model return the pre-logits (what ``forward_head(x, pre_logits=True)`` gives), the
feature tensor. The input size and the normalization come from the pretrained config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from torch import nn

from ptr_lightning.core.errors import ConfigError, WeightsError
from ptr_lightning.core.settings import Rule
from ptr_lightning.model.classifier import run_on_meta
from ptr_lightning.model.weights import load_weights

PRETRAINED = "pretrained"
RUN_CHECKPOINT_SUFFIX = ".ckpt"  # a Lightning checkpoint of an earlier run of this project
WEIGHTS_RULE = Rule(
    "model.weights",
    lambda v: str(v) != "imagenet",
    "pretrained (timm's weights of the model's tag), null or a path, with model=timm",
    kind="any",
)


def import_timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            'model=timm needs timm, an optional extra: pip install "ptr-lightning[timm]"'
        ) from None
    return timm


def pretrained_cfg(name: str):
    """timm's pretrained config of ``name`` (``arch`` or ``arch.tag``)."""
    timm = import_timm()
    if not timm.is_model(name):
        raise ConfigError(
            f"model.name={name!r} is not a timm model; timm.list_models('*{name.split('.')[0]}*',"
            " pretrained=True) lists the names with weights"
        )
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"model.name={name!r}: timm has no pretrained config for it")
    return cfg


def input_spec(name: str, key: str):
    """``size``, ``mean`` or ``std`` of the images ``name``'s weights expect (timm's pretrained
    config; nothing is downloaded). The ``ptr.timm_input`` resolver of ``model.input``."""
    cfg = pretrained_cfg(name)
    spec = {"size": cfg.input_size[-1], "mean": list(cfg.mean), "std": list(cfg.std)}
    return spec[key]


def hub_advice(name: str) -> str:
    """Where ``name``'s pretrained weights come from, and how to get them onto an offline
    machine."""
    cfg = pretrained_cfg(name)
    hub = cfg.hf_hub_id
    if hub:
        file = cfg.hf_hub_filename or "model.safetensors"
        where = f"https://huggingface.co/{hub}/resolve/main/{file}"
        cache = "the Hugging Face cache (hf download " + hub + "; HF_HOME sets where)"
    else:
        where, cache = cfg.url or cfg.file or "(timm names no file)", "timm's torch hub cache"
    return (
        f"On a machine with internet, download {where} and pass "
        f"model.weights=/path/to/{Path(where).name}, or fill {cache}; "
        "model.weights=null trains from random initialisation."
    )


class TimmModels:
    """``model.library: timm``: ``timm.create_model(name, **kwargs)``."""

    def check(self, model_cfg) -> None:
        pretrained_cfg(model_cfg.name)
        WEIGHTS_RULE.check(model_cfg.weights)
        if list(model_cfg.head or []):
            raise ConfigError(
                f"model.head={list(model_cfg.head)}: with model=timm the head is timm's own "
                "(reset_classifier(0) leaves the pre-logits); leave model.head empty"
            )

    def build(self, model_cfg) -> tuple[nn.Module, str]:
        """The model with ``model.weights`` loaded, and its classifier's name (its settings
        checked by :meth:`check` first)."""
        timm, name, weights = import_timm(), model_cfg.name, model_cfg.weights
        kwargs = dict(model_cfg.kwargs or {})
        from_run = weights is not None and Path(str(weights)).suffix == RUN_CHECKPOINT_SUFFIX
        if weights is not None and not from_run and str(weights) != PRETRAINED:
            path = Path(str(weights)).expanduser()
            if not path.is_file():
                raise WeightsError(f"model.weights={str(path)!r}: no such file")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        pretrained = weights is not None and not from_run
        try:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except (OSError, RuntimeError) as err:  # hub unreachable, not in the cache, bad file
            if not pretrained:
                raise
            raise WeightsError(
                f"could not load timm's weights for {name} (model.weights={weights}): "
                f"{type(err).__name__}: {err}\n{hub_advice(name)}"
            ) from err
        run_on_meta(model, model_cfg.input.size, what=f"timm's {name}")  # takes the data's size
        classifier = next(n for n, m in model.named_modules() if m is model.get_classifier())
        if from_run:
            load_weights(model, str(weights), classifier)
        return model, classifier

    def detach_head(self, model: nn.Module, head: Sequence[str]) -> nn.Module:
        """The backbone: ``model`` after timm's ``reset_classifier(0)``, which returns the
        pre-logits."""
        model.reset_classifier(0)
        return model

    def layer_depths(self, backbone: nn.Module, model_cfg) -> dict[str, int]:
        """Each backbone parameter's depth below the head, for layer-wise learning-rate decay:
        the layers of timm's ``group_parameters`` with the model's own ``group_matcher``, the
        last one just below the head (depth 1), as timm's ``param_groups_layer_decay`` has it."""
        timm = import_timm()
        if not hasattr(backbone, "group_matcher"):
            raise ConfigError(
                f"model.layer_decay: timm's {model_cfg.name} has no group_matcher() to place "
                "its parameters in layers; set model.layer_decay=null"
            )
        matcher = backbone.group_matcher(coarse=False)
        layers = timm.models.group_parameters(backbone, matcher, reverse=True)
        top = max(layers.values()) + 1
        return {name: top - layer for name, layer in layers.items()}
