"""What a run measures about its features and gradients, beyond its losses (pure torch).

The LightningModule calls :func:`step_telemetry` on every ``telemetry.every_n_steps``-th
training step, before the step's backward. Nothing here writes ``.grad``, frees the graph or
draws random numbers, so telemetry never changes what the step computes.

Per batch, with ``r_j = dL/drep_j`` the row of the feature gradient of the batch-mean loss L
that belongs to instance j (instance j's own gradient, divided by the batch size B):

    coherence = ||mean_j r_j||^2 / mean_j ||r_j||^2     in [0, 1]: 1 when every instance pushes
                                                         the features the same way, ~1/B when
                                                         their pushes are unrelated
    summed    = ||sum_j r_j||                            the push all instances share
    param     = ||dL/dtheta||                            over the backbone's parameters

for the cross-entropy (``_ce``) and for the regularizer's weighted term when it is a function
of the features (``_ptr``: PtR's ``w L_ptr``, FNP's, the feature-norm penalty's), and the
cosine of the two parameter gradients. Compare ``ptr/g_ce``, what w divides: mean_j ||r_j||
with ``balance=features``, ``summed`` with ``batch`` (then ``grad/sum_ptr / grad/sum_ce`` = 1/R),
``param`` with ``parameters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, integer
from ptr_lightning.core.tensors import at_least_float32
from ptr_lightning.ptr import global_norm, parameter_gradients


@dataclass(frozen=True)
class TelemetrySettings:
    """``telemetry.every_n_steps`` (0: off) and the number of steps of ``train/ce`` kept on
    each side of the first switch-on (``telemetry.switch_window``)."""

    every_n_steps: int = 50
    switch_window: int = 100

    RULES: ClassVar = {
        "every_n_steps": integer("telemetry.every_n_steps", 0, why=" (0 turns telemetry off)"),
        "switch_window": integer("telemetry.switch_window", 0),
    }

    def __post_init__(self) -> None:
        check(self.RULES, every_n_steps=self.every_n_steps, switch_window=self.switch_window)

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0

    @property
    def watches_switch(self) -> bool:
        """Whether ``train/ce_around_switch`` is recorded."""
        return self.enabled and self.switch_window > 0

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (0-based, over the whole run) is measured."""
        return self.enabled and step % self.every_n_steps == 0


def feature_statistics(features: Tensor) -> dict[str, Tensor]:
    """Mean, standard deviation and share of exact zeros (dead ReLUs) of the feature tensor."""
    x = at_least_float32(features.detach())
    return {
        names.FEAT_MEAN: x.mean(),
        names.FEAT_STD: x.std(),
        names.FEAT_ZERO_FRAC: (x == 0).float().mean(),
    }


def row_gradients(loss: Tensor, features: Tensor) -> Tensor:
    """``d loss / d features`` (B, D) in float32, zeros if ``loss`` does not depend on them."""
    (grad,) = torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True)
    return (
        torch.zeros_like(at_least_float32(features.detach()))
        if grad is None
        else at_least_float32(grad.detach())
    )


def coherence(rows: Tensor) -> Tensor:
    """``||mean_j r_j||^2 / mean_j ||r_j||^2`` over the rows of a (B, ...) tensor; 0 when every
    row is zero."""
    rows = rows.flatten(1)
    shared = rows.mean(dim=0).square().sum()
    own = rows.square().sum(dim=1).mean()
    return torch.where(own > 0, shared / own, torch.zeros_like(own))


def summed_norm(rows: Tensor) -> Tensor:
    """``||sum_j r_j||``: the norm of the rows' sum."""
    return rows.flatten(1).sum(dim=0).norm()


def cosine(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """Cosine of two gradients given as lists of per-parameter tensors; 0 if one is zero."""
    dot = sum(
        (at_least_float32(x.detach()) * at_least_float32(y.detach())).sum()
        for x, y in zip(a, b, strict=True)
    )
    norms = global_norm(a) * global_norm(b)
    return torch.where(norms > 0, dot / norms, torch.zeros_like(norms))


def weight_norm(module: nn.Module) -> Tensor:
    """Frobenius norm of a module's weight matrices (biases and norm scales left out)."""
    return global_norm([p.detach() for p in module.parameters() if p.ndim > 1])


# (coherence, summed norm, parameter-gradient norm) of the cross-entropy and of the term.
GRADIENT_KEYS = {
    "ce": (names.GRAD_COHERENCE_CE, names.GRAD_SUM_CE, names.GRAD_PARAM_CE),
    "ptr": (names.GRAD_COHERENCE_PTR, names.GRAD_SUM_PTR, names.GRAD_PARAM_PTR),
}


def step_telemetry(
    ce: Tensor, term: Tensor | None, features: Tensor, parameters: Sequence[Tensor]
) -> dict[str, Tensor]:
    """Feature statistics and the gradient measurements of the module docstring.

    ``ce`` is the batch-mean cross-entropy, ``term`` the regularizer's weighted term when it is
    a function of ``features`` alone (else ``None``: only the ``_ce`` keys), ``parameters``
    the backbone's. Costs one backward through the head (two with ``term``) and one through
    the backbone per loss; the graph is kept for the step's own backward.
    """
    stats = feature_statistics(features)
    grads = {"ce": row_gradients(ce, features)}
    if term is not None:
        grads["ptr"] = row_gradients(term, features)
    at_parameters = {}
    for which, rows in grads.items():
        coherence_key, sum_key, param_key = GRADIENT_KEYS[which]
        at_parameters[which] = parameter_gradients(features, rows, parameters)
        stats[coherence_key] = coherence(rows)
        stats[sum_key] = summed_norm(rows)
        stats[param_key] = global_norm(at_parameters[which])
    if term is not None:
        stats[names.GRAD_PARAM_COS] = cosine(at_parameters["ce"], at_parameters["ptr"])
    return stats
