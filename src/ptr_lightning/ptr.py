"""Pseudo-task Regularization (PtR) as plain PyTorch.

Reference: Zhong & Maki, "Regularizing CNN Transfer Learning with Randomised Regression",
CVPR 2020 (arXiv 1908.05997, "Pseudo-task Regularization for ConvNet Transfer Learning"),
Algorithm 1 and Eq. 1-5.

For a batch with feature tensor ``rep`` (B x D) feeding the target classifier:

    L_ptr = f_reg(rep, t),        t ~ Uniform[0, 2m)  (t = 0 gives FNP)
    G_ce  = mean_j ||dL_ce  / drep_j||_2
    G_ptr = mean_j ||dL_ptr / drep_j||_2
    w     = G_ce / (G_ptr * R)                       (a constant: no gradient flows through it)
    L     = L_ce + w * L_ptr

so after weighting, the pseudo-task's mean per-instance gradient norm at the feature layer is
1/R of the cross-entropy's. Only the classifier head is back-propagated to obtain dL_ce/drep,
so a training step that back-propagates ``L`` once costs the same as plain fine-tuning.

Nothing here depends on Lightning: use :func:`pseudo_task_loss` from any training loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ptr_lightning.settings import non_negative, one_of, positive

REGRESSION_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "smooth_l1": F.smooth_l1_loss,
    "l2": F.mse_loss,
}

# d f_reg / d features per element, times the number of elements (the mean's 1/N left out):
# closed forms, so the pseudo-task's gradient norm needs no autograd call.
REGRESSION_GRADIENTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "smooth_l1": lambda x, t: (x - t).clamp(-1.0, 1.0),  # beta = 1, torch's default
    "l2": lambda x, t: 2.0 * (x - t),
}


# The settings of the algorithm, checked here and by every object that takes them.
RATIO_RULE = positive("regularizer.R", " (the CE : pseudo-task gradient-norm ratio)")
MEAN_RULE = non_negative("regularizer.m", " (the targets are Uniform[0, 2m))")
LOSS_RULE = one_of(
    "regularizer.loss", REGRESSION_LOSSES, " (set by regression=sml1 or regression=l2)"
)


def regression_loss(features: Tensor, targets: Tensor, loss: str = "smooth_l1") -> Tensor:
    """``f_reg(features, targets)``, mean over all elements: smooth-L1 ("SML1") or L2 (MSE)."""
    return REGRESSION_LOSSES[LOSS_RULE.check(loss)](features, targets)


def draw_targets(features: Tensor, m: float, generator: torch.Generator | None = None) -> Tensor:
    """Pseudo-regression targets ~ Uniform[0, 2m), float32, of ``features``' shape (mean m)."""
    u = torch.rand(features.shape, generator=generator, device=features.device, dtype=torch.float32)
    return u * (2.0 * m)


def mean_row_grad_norm(loss: Tensor, features: Tensor) -> Tensor:
    """``mean_j ||d loss / d features_j||_2``, in float32 at least (half-precision gradients
    would lose the norm's precision); keeps the graph for the step's real backward."""
    (grad,) = torch.autograd.grad(loss, features, retain_graph=True)
    grad = grad.to(torch.promote_types(grad.dtype, torch.float32))
    return grad.flatten(1).norm(dim=1).mean()


def balance_weight(g_ce: Tensor, g_ptr: Tensor, R: float) -> Tensor:
    """``w = g_ce / (g_ptr * R)``, and 0 wherever that is not a finite number.

    A zero norm (features already on their targets, or a perfectly fitted batch) would give
    0/0 or x/0; a zero weight then simply skips the pseudo-task for that batch.
    """
    w = g_ce / (g_ptr * R)
    return torch.where(torch.isfinite(w), w, torch.zeros_like(w)).detach()


def pseudo_task_loss(
    features: Tensor,
    ce_loss: Tensor,
    *,
    R: float,
    m: float = 1.0,
    loss: str = "smooth_l1",
    targets: Tensor | None = None,
    generator: torch.Generator | None = None,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Return ``(L_ce + w * L_ptr, stats)`` for one batch (Algorithm 1 of the paper).

    Args:
        features: the (B, D) tensor the classifier consumed, inside ``ce_loss``'s graph.
        ce_loss: the batch-mean cross-entropy of the classifier.
        R: target ratio of the cross-entropy's to the pseudo-task's gradient norm (> 0).
        m: mean of the Uniform[0, 2m) targets (ignored when ``targets`` is given).
        loss: ``"smooth_l1"`` or ``"l2"``.
        targets: explicit targets of ``features``' shape (FNP passes zeros); ``None`` draws them.
        generator: random generator for the targets, on ``features``' device.
        reduce: applied to both batch-mean gradient norms before ``w`` is formed, e.g. a mean
            across data-parallel ranks so that every rank uses the same ``w``.

    Returns:
        ``total`` (differentiable; ``w`` is a constant) and detached ``stats`` with keys
        ``w``, ``g_ce``, ``g_ptr`` and ``ptr_loss``.
    """
    RATIO_RULE.check(R)
    if targets is None:
        targets = draw_targets(features, m, generator)
    # The regression runs on a float32 (or wider) copy of the features so that its gradient,
    # ~1/(B*D) per element, does not underflow in half precision.
    features32 = features.to(torch.promote_types(features.dtype, torch.float32))
    targets = targets.to(features32)
    ptr_loss = regression_loss(features32, targets, loss)
    g_ce = mean_row_grad_norm(ce_loss, features)
    d_ptr = REGRESSION_GRADIENTS[loss](features32.detach(), targets) / features.numel()
    g_ptr = d_ptr.flatten(1).norm(dim=1).mean()
    if reduce is not None:
        g_ce, g_ptr = reduce(g_ce), reduce(g_ptr)
    w = balance_weight(g_ce, g_ptr, R)
    total = ce_loss + w.to(ce_loss.dtype) * ptr_loss.to(ce_loss.dtype)
    stats = {"w": w, "g_ce": g_ce.detach(), "g_ptr": g_ptr.detach(), "ptr_loss": ptr_loss.detach()}
    return total, stats
