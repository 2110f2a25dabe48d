"""Find a model's classifier: the Linear layer whose output is the model's logits.

PtR regularizes the input of that layer (the feature tensor), so it is found from the model
itself rather than written down per architecture: the model runs once on an empty image of its
input size, on the meta device (no memory, no compute, no random numbers drawn), with a hook on
every Linear layer, and the one whose output *is* the model's output is the classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.tensors import evaluating, on_meta


def run_on_meta(model: nn.Module, input_size: int, *, what: str) -> dict[str, Tensor]:
    """Run ``model`` on one empty ``input_size`` x ``input_size`` RGB image on the meta device;
    return its output (``""``) and the output of each of its Linear layers (by name). ``what``
    names the model in the error raised when it cannot take that size."""
    outputs: dict[str, Tensor] = {}
    hooks = [
        module.register_forward_hook(
            lambda _module, _args, out, name=name: outputs.__setitem__(name, out)
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name
    ]
    images = torch.empty(1, 3, input_size, input_size, device="meta")
    try:
        with evaluating(model), torch.no_grad():
            outputs[""] = functional_call(model, on_meta(model), (images,))
    except Exception as err:
        raise ConfigError(
            f"{what} does not run on {input_size}x{input_size} images (model.input.size; the "
            f"data's crop follows it): {type(err).__name__}: {err}. A model built for one input "
            "size (a ViT) needs that size, or is built for another (model.kwargs: torchvision's "
            "image_size, timm's img_size: +model.kwargs.img_size=...)."
        ) from err
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def logits_layer(model: nn.Module, input_size: int, *, what: str) -> str:
    """The name of the Linear layer of ``model`` whose output is the model's output (logits) on a
    batch of ``input_size`` x ``input_size`` RGB images. ``what`` names the model in errors."""
    outputs = run_on_meta(model, input_size, what=what)
    found = [name for name, out in outputs.items() if name and out is outputs[""]]
    if not found:
        raise ConfigError(
            f"{what}: no Linear layer produces its logits (its classifier is another kind of "
            "layer), so it has no feature tensor for PtR to regularize; pick another model"
        )
    return found[-1]
