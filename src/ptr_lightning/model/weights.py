"""Load pre-trained weights into a model, offline-friendly.

``model.weights`` is ``imagenet`` (torchvision's file, from its cache or downloaded; timm's
presets say ``pretrained``, see :mod:`ptr_lightning.model.timm_models`), ``null`` (random init),
or a path to either a state_dict in the model's own format or a checkpoint of an earlier run of
this project, so that a model fine-tuned on one data set can be fine-tuned on another. The
target always gets a fresh classifier; the source's classifier (ImageNet's, or the earlier
run's) is kept aside for regularizers that use the source task (LwF).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ptr_lightning.core.errors import WeightsError

BACKBONE_PREFIX = "backbone."
HEAD_PREFIX = "head."


def imagenet_state_dict(arch: str, weights) -> dict[str, torch.Tensor]:
    """torchvision's ``weights`` (a member of ``arch``'s weights enum); a clear error when
    offline."""
    weights_name = weights.name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # URLError, socket errors, hash mismatch: all need the same advice
        file_name = Path(weights.url).name
        cache = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        raise WeightsError(
            f"could not load ImageNet weights for {arch} ({weights_name}) from {weights.url}: "
            f"{err}.\nOn a machine with internet, download that file and put it at {cache} "
            f"(or set TORCH_HOME), or pass model.weights=/path/to/{file_name}; "
            "model.weights=null trains from random initialisation."
        ) from err


# torch.save's zip archive, and the pickle of its legacy format (older torchvision weights).
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02")


def is_torch_file(path: Path) -> bool:
    """Whether ``path`` starts as a file that ``torch.save`` writes (not whether it is whole)."""
    with open(path, "rb") as f:
        return f.read(4).startswith(TORCH_FILE_STARTS)


def state_dict_from_file(path: str | Path, classifier_name: str) -> dict[str, torch.Tensor]:
    """A torchvision-format state_dict, or one made from a checkpoint of this project: its
    ``backbone.*`` tensors, and its head's last layer as ``classifier_name``."""
    path = Path(path).expanduser()
    expected = (
        "Give a torchvision state_dict (.pth) or a checkpoint of an earlier run "
        "(<run folder>/checkpoints/last.ckpt)."
    )
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.p*t*"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise WeightsError(f"model.weights={str(path)!r} is a folder{hint}. {expected}")
    if not path.is_file():
        raise WeightsError(f"model.weights={str(path)!r}: no such file. {expected}")
    if not is_torch_file(path):
        raise WeightsError(f"model.weights={str(path)!r} is not a PyTorch weights file. {expected}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WeightsError(
            f"model.weights={str(path)!r} cannot be read: it is truncated, damaged, or holds "
            f"more than tensors (torch.load with weights_only=True: {reason}). {expected}"
        ) from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        backbone = {
            k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
        }
        if not backbone:
            raise WeightsError(
                f"checkpoint {path} holds no '{BACKBONE_PREFIX}*' tensors: "
                "it was not written by ptr_lightning"
            )
        head_layers = [k.split(".")[1] for k in state if k.startswith(HEAD_PREFIX)]
        if head_layers:
            last = f"{HEAD_PREFIX}{max(head_layers, key=int)}."
            for k, v in state.items():
                if k.startswith(last):
                    backbone[f"{classifier_name}.{k[len(last) :]}"] = v
        return backbone
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise WeightsError(
        f"model.weights={str(path)!r} holds a {type(obj).__name__}, not a state_dict "
        "(a dict of name -> tensor) nor a Lightning checkpoint"
    )


def fit_classifier(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Resize the model's source classifier to the one in ``state`` (e.g. an earlier run's)."""
    weight = state.get(f"{name}.weight")
    current = model.get_submodule(name)
    if weight is not None and weight.shape != current.weight.shape:
        in_features, out_features = weight.shape[1], weight.shape[0]
        model.set_submodule(
            name, nn.Linear(in_features, out_features, bias=f"{name}.bias" in state)
        )


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, skip: str, source: str) -> None:
    """Load ``state`` into ``model``; every tensor must fit, and only ``skip.*`` may be absent."""
    skip_prefix = skip + "."
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith(skip_prefix))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        lines = [f"weights from {source} do not fit {type(model).__name__}:"]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", mismatched),
        ):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > 8 else ""
                shown = ", ".join(keys[:8]) + more
                lines.append(f"  {title}: {shown}")
        lines.append("Check that model= names the backbone these weights were trained with.")
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state, strict=False)


def load_weights(
    model: nn.Module,
    weights: dict[str, torch.Tensor] | str | Path,
    classifier_name: str,
    *,
    source: str | None = None,
) -> None:
    """Load ``weights`` (a state_dict, or a file :func:`state_dict_from_file` reads) into a
    freshly built ``model`` in place; its classifier takes the shape of the one in the file."""
    if not isinstance(weights, dict):
        weights, source = state_dict_from_file(weights, classifier_name), str(weights)
    fit_classifier(model, weights, classifier_name)
    load_into(model, weights, skip=classifier_name, source=source or "a state_dict")
