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

The paper leaves some choices open; each has a registry here, the paper's reading first:
:data:`TARGETS` (how ``t`` is drawn), :data:`M_MODES` (what ``m`` is relative to) and
:data:`BALANCES` (where the two gradient norms are measured). :data:`PULL_SHARES` says, per kind
of target, how much of the pseudo-task's gradient is a pull towards the targets' mean rather
than noise (``ptr/pull_frac``).

Nothing here depends on Lightning: use :func:`pseudo_task_loss` from any training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ptr_lightning.core.config_keys import PTR_M, PTR_R, PTR_TARGETS
from ptr_lightning.core.settings import non_negative, one_of, positive
from ptr_lightning.core.tensors import at_least_float32

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

# |rep - t| beyond which f_reg's gradient is constant (smooth-L1's linear part; beta = 1).
SATURATION: dict[str, float] = {"smooth_l1": 1.0}


def saturated_fraction(features: Tensor, targets: Tensor, beta: float = 1.0) -> Tensor:
    """Share of elements with ``|rep - t| > beta``, where smooth-L1's gradient is the constant
    ``sign(rep - t)`` (its linear part) rather than ``rep - t``."""
    x = at_least_float32(features.detach())
    return ((x - targets).abs() > beta).float().mean()


# The settings of the algorithm, checked here and by every object that takes them.
RATIO_RULE = positive(PTR_R, " (the CE : pseudo-task gradient-norm ratio)")
MEAN_RULE = non_negative(PTR_M, " (the targets are Uniform[0, 2m))")
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


def per_instance_targets(
    features: Tensor, m: float, generator: torch.Generator | None = None
) -> Tensor:
    """One value ~ Uniform[0, 2m) per instance, shared by its D elements (the paper's
    "t_j in [0, 2m) where j is an instance in batch i" read literally)."""
    b = features.shape[0]
    u = torch.rand((b, 1), generator=generator, device=features.device, dtype=torch.float32)
    return (u * (2.0 * m)).expand(features.shape)


def constant_targets(
    features: Tensor, m: float, generator: torch.Generator | None = None
) -> Tensor:
    """``t = m`` everywhere: uniform targets' pull towards m, without their noise."""
    return torch.full(features.shape, float(m), device=features.device, dtype=torch.float32)


def centred_targets(features: Tensor, m: float, generator: torch.Generator | None = None) -> Tensor:
    """``t = rep + U(-m, m)``: uniform targets' noise (the same spread 2m), without their pull."""
    u = torch.rand(features.shape, generator=generator, device=features.device, dtype=torch.float32)
    return features.detach().float() + (u * 2.0 - 1.0) * m


def zero_targets(features: Tensor, m: float, generator: torch.Generator | None = None) -> Tensor:
    """``t = 0``: FNP, the paper's feature-norm ablation with PtR's balancing (``m`` unused)."""
    return torch.zeros(features.shape, device=features.device, dtype=torch.float32)


# regularizer.targets: (features, m, generator) -> float32 targets of features' shape. Only the
# random kinds draw from the generator, so the deterministic ones leave its stream alone.
TARGETS: dict[str, Callable[[Tensor, float, torch.Generator | None], Tensor]] = {
    "uniform": draw_targets,
    "uniform_instance": per_instance_targets,
    "constant": constant_targets,
    "centred": centred_targets,
    "zero": zero_targets,
}


# --- the pull share: how much of the pseudo-task's gradient is its expectation --------------
#
# With d = rep - t and g = f_reg'(d) per element, the gradient's energy over the targets splits
# as E_t||g||^2 = ||E_t g||^2 + E_t||g - E_t g||^2: a pull (the same every batch, towards where
# the targets lie on average) and noise. For t ~ U[0, 2m) both moments have closed forms:
# E_t g = (F(rep) - F(rep - 2m)) / 2m with F the antiderivative of g (f_reg(., 0) itself), and
# E_t g^2 = (G(rep) - G(rep - 2m)) / 2m with G the antiderivative of g^2.
GRADIENT_INTEGRALS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "smooth_l1": (  # g = clamp(d, -1, 1)
        lambda d: F.smooth_l1_loss(d, torch.zeros_like(d), reduction="none"),
        lambda d: torch.where(d.abs() <= 1, d.pow(3) / 3, d - d.sign() * (2 / 3)),
    ),
    "l2": (torch.square, lambda d: 4 * d.pow(3) / 3),  # g = 2d
}


def uniform_pull(features: Tensor, m: float, loss: str) -> Tensor:
    """``||E_t g||^2 / E_t ||g||^2`` over the feature tensor for ``t ~ U[0, 2m)``, closed form.

    It depends on each element's target only through its distribution, so one value per
    instance (``uniform_instance``) pulls exactly as much as one per element.
    """
    if m == 0:  # t = 0 for sure: the gradient is all pull
        return deterministic_pull(features, m, loss)
    # Two antiderivatives are differenced: float64 keeps a small m exact (MPS has none).
    exact = torch.float32 if features.device.type == "mps" else torch.float64
    x, a = features.detach().to(exact), 2.0 * m
    mean, energy = ((integral(x) - integral(x - a)) / a for integral in GRADIENT_INTEGRALS[loss])
    share = mean.square().sum() / energy.sum()
    return torch.where(energy.sum() > 0, share, torch.zeros_like(share)).float()


def deterministic_pull(features: Tensor, m: float, loss: str) -> Tensor:
    """1: targets that are not random (``constant``, ``zero``) are all pull, no noise."""
    return torch.ones((), device=features.device)


def centred_pull(features: Tensor, m: float, loss: str) -> Tensor:
    """0: ``t = rep + U(-m, m)`` gives ``g(-u)`` with ``u`` symmetric, whose mean is 0."""
    return torch.zeros((), device=features.device)


# regularizer.targets -> (features, m, loss) -> ptr/pull_frac: the share of the pseudo-task's
# gradient energy at the features that is its expectation over the targets.
PULL_SHARES: dict[str, Callable[[Tensor, float, str], Tensor]] = {
    "uniform": uniform_pull,
    "uniform_instance": uniform_pull,
    "constant": deterministic_pull,
    "centred": centred_pull,
    "zero": deterministic_pull,
}
TARGETS_RULE = one_of(PTR_TARGETS, TARGETS, " (how the pseudo-targets are drawn)")


def scaled_by_feature_mean(m: float, feature_mean: float | None) -> float:
    """``m x`` the feature tensor's mean measured over the epoch before the switch."""
    if feature_mean is None:
        raise RuntimeError(
            "regularizer.m_mode=features: no feature mean was measured before the switch"
        )
    return m * feature_mean


# regularizer.m_mode: (regularizer.m, measured feature mean or None) -> the m the targets use.
M_MODES: dict[str, Callable[[float, float | None], float]] = {
    "absolute": lambda m, feature_mean: m,
    "features": scaled_by_feature_mean,
}
# regularizer.m_mode -> regularizer.m when none is given, from the backbone's m (model.ptr.m):
# relative to the features m multiplies their measured mean, whatever the backbone (VGG-16's
# 12.5 there would scale the targets twice).
M_DEFAULTS: dict[str, Callable[[float], float]] = {
    "absolute": lambda backbone_m: backbone_m,
    "features": lambda backbone_m: 1.0,
}
M_MODE_RULE = one_of("regularizer.m_mode", M_MODES, " (m as given, or x the features' mean)")


def feature_gradient(loss: Tensor, features: Tensor) -> Tensor:
    """``d loss / d features`` in float32 at least (half-precision gradients would lose the
    norms' precision); keeps the graph for the step's real backward."""
    (grad,) = torch.autograd.grad(loss, features, retain_graph=True)
    return at_least_float32(grad)


def mean_row_grad_norm(loss: Tensor, features: Tensor) -> Tensor:
    """``mean_j ||d loss / d features_j||_2``: the mean per-instance gradient norm."""
    return feature_gradient(loss, features).flatten(1).norm(dim=1).mean()


def balance_weight(g_ce: Tensor, g_ptr: Tensor, R: float) -> Tensor:
    """``w = g_ce / (g_ptr * R)``, and 0 wherever that is not a finite number.

    A zero norm (features already on their targets, or a perfectly fitted batch) would give
    0/0 or x/0; a zero weight then simply skips the pseudo-task for that batch.
    """
    w = g_ce / (g_ptr * R)
    return torch.where(torch.isfinite(w), w, torch.zeros_like(w)).detach()


def parameter_gradients(
    features: Tensor, feature_grad: Tensor, parameters: Sequence[Tensor]
) -> list[Tensor]:
    """``d loss / d theta`` for a loss that reaches ``parameters`` only through ``features``,
    given ``feature_grad = d loss / d features``: one backward through the part of the graph
    that made ``features`` (the backbone), nothing written to ``.grad``, the graph kept."""
    grads = torch.autograd.grad(
        features,
        list(parameters),
        grad_outputs=feature_grad.to(features.dtype),
        retain_graph=True,
        allow_unused=True,
    )
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)]


def global_norm(grads: Sequence[Tensor]) -> Tensor:
    """``||(g_1, ..., g_n)||_2`` over a list of tensors, in float32 at least."""
    # Not torch.nn.utils.get_total_norm: it keeps bf16 gradients' precision, and is newer
    # (torch 2.6) than this project's floor.
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(at_least_float32(g)) for g in grads])
    )


def feature_balance(
    ce_loss: Tensor, features: Tensor, d_ptr: Tensor, parameters: Sequence[Tensor] | None
) -> tuple[Tensor, Tensor]:
    """The paper's Eq. 4: the mean per-instance gradient norms at the feature tensor,
    ``mean_j ||dL_ce/drep_j||`` (through the head only) and ``mean_j ||dL_ptr/drep_j||``."""
    return mean_row_grad_norm(ce_loss, features), d_ptr.flatten(1).norm(dim=1).mean()


def parameter_balance(
    ce_loss: Tensor, features: Tensor, d_ptr: Tensor, parameters: Sequence[Tensor] | None
) -> tuple[Tensor, Tensor]:
    """GradNorm-like (Chen et al., ICML 2018): ``||dL_ce/dtheta||`` and ``||dL_ptr/dtheta||``
    over ``parameters`` (the backbone's), so that ``||w dL_ptr/dtheta|| = ||dL_ce/dtheta|| / R``.
    Costs two backward passes through the backbone besides the step's own."""
    if not parameters:
        raise ValueError("balance='parameters' needs the backbone's parameters (parameters=...)")
    (d_ce,) = torch.autograd.grad(ce_loss, features, retain_graph=True)
    g_ce = global_norm(parameter_gradients(features, d_ce, parameters))
    return g_ce, global_norm(parameter_gradients(features, d_ptr, parameters))


def batch_balance(
    ce_loss: Tensor, features: Tensor, d_ptr: Tensor, parameters: Sequence[Tensor] | None
) -> tuple[Tensor, Tensor]:
    """The batch-summed gradients at the feature tensor, ``||sum_j dL_ce/drep_j||`` and
    ``||sum_j dL_ptr/drep_j||``: w then bounds the push all instances share (telemetry's
    ``grad/sum_ptr / grad/sum_ce`` = 1/R), which a coherent pseudo-task makes larger than the
    per-instance norms say. Costs what ``features`` costs (the head's backward only)."""
    summed_ce = feature_gradient(ce_loss, features).flatten(1).sum(dim=0)
    return summed_ce.norm(), d_ptr.flatten(1).sum(dim=0).norm()


# regularizer.balance: where the two gradient norms that set w are measured.
BALANCES: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "features": feature_balance,
    "parameters": parameter_balance,
    "batch": batch_balance,
}
BALANCE_RULE = one_of("regularizer.balance", BALANCES, " (where w balances the two gradients)")


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
    balance: str = "features",
    parameters: Sequence[Tensor] | None = None,
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
        balance: where w's two norms are measured (:data:`BALANCES`): ``"features"`` (the
            paper), ``"batch"`` (summed over the batch) or ``"parameters"``.
        parameters: the backbone's parameters, for ``balance="parameters"``.

    Returns:
        ``total`` (differentiable; ``w`` is a constant) and detached ``stats`` with keys
        ``w``, ``g_ce``, ``g_ptr`` and ``ptr_loss``.
    """
    RATIO_RULE.check(R)
    BALANCE_RULE.check(balance)
    if targets is None:
        targets = draw_targets(features, m, generator)
    # The regression runs on a float32 (or wider) copy of the features so that its gradient,
    # ~1/(B*D) per element, does not underflow in half precision.
    features32 = at_least_float32(features)
    targets = targets.to(features32)
    ptr_loss = regression_loss(features32, targets, loss)
    d_ptr = REGRESSION_GRADIENTS[loss](features32.detach(), targets) / features.numel()
    g_ce, g_ptr = BALANCES[balance](ce_loss, features, d_ptr, parameters)
    if reduce is not None:
        g_ce, g_ptr = reduce(g_ce), reduce(g_ptr)
    w = balance_weight(g_ce, g_ptr, R)
    total = ce_loss + w.to(ce_loss.dtype) * ptr_loss.to(ce_loss.dtype)
    stats = {"w": w, "g_ce": g_ce.detach(), "g_ptr": g_ptr.detach(), "ptr_loss": ptr_loss.detach()}
    return total, stats
