"""Torch helpers that several layers share: precision, eval mode, shapes without memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 or wider (differentiable): norms, softmax and KL of half-precision
    values lose their small terms."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def squared_norm(x: Tensor) -> Tensor:
    """``||x||^2`` in float32 or wider."""
    return at_least_float32(x).pow(2).sum()


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Every module (and submodule) of ``modules`` in eval mode inside the block (no dropout,
    BatchNorm's running statistics, one output); their own modes back afterwards."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def on_meta(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of ``model`` as an empty tensor of its shape on the meta
    device, for :func:`torch.func.functional_call` (shapes, no memory, no compute)."""
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: torch.empty_like(t, device="meta") for name, t in state.items()}
