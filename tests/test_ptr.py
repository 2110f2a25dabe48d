"""pseudo_task_loss against an independent per-sample-gradient reference (torch.func)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ptr_lightning.ptr import pseudo_task_loss

B, D, K = 6, 5, 4


def make_batch(seed: int = 0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (B,), generator=g)
    body = torch.nn.Linear(7, D).double()
    head = torch.nn.Linear(D, K).double()
    torch.nn.init.normal_(body.weight, generator=g)
    torch.nn.init.normal_(head.weight, generator=g)
    return x, labels, body, head


def reference(features, labels, head, targets, loss, R):
    """w, total and d total / d features from per-sample gradients, computed independently."""
    f_reg = {"smooth_l1": F.smooth_l1_loss, "l2": F.mse_loss}[loss]
    W, b = head.weight.detach(), head.bias.detach()
    n = features.shape[0]

    def ce_one(feat, label):  # sample j's share of the batch-mean cross-entropy
        return F.cross_entropy((feat @ W.T + b)[None], label[None]) / n

    def reg_one(feat, target):  # sample j's share of the mean over all B*D elements
        return f_reg(feat, target, reduction="sum") / features.numel()

    feats = features.detach()
    g_ce = vmap(grad(ce_one))(feats, labels).norm(dim=1).mean()
    g_reg = vmap(grad(reg_one))(feats, targets).norm(dim=1).mean()
    w = g_ce / (g_reg * R)
    ce = F.cross_entropy(feats @ W.T + b, labels)
    total = ce + w * f_reg(feats, targets)
    d_total = vmap(grad(ce_one))(feats, labels) + w * vmap(grad(reg_one))(feats, targets)
    return w, total, d_total, g_ce, g_reg


@pytest.mark.parametrize("loss", ["smooth_l1", "l2"])
@pytest.mark.parametrize("explicit_targets", [True, False])
def test_matches_per_sample_gradient_reference(loss, explicit_targets):
    x, labels, body, head = make_batch()
    features = body(x)
    ce = F.cross_entropy(head(features), labels)
    R, m = 3.0, 1.5
    if explicit_targets:
        targets = torch.rand(B, D, dtype=torch.float64) * 4 - 1
        kwargs = {"targets": targets}
    else:
        kwargs = {"generator": torch.Generator().manual_seed(7)}
        targets = torch.rand(B, D, generator=torch.Generator().manual_seed(7)) * (2 * m)
        targets = targets.double()

    total, stats = pseudo_task_loss(features, ce, R=R, m=m, loss=loss, **kwargs)
    w, ref_total, ref_grad, g_ce, g_ptr = reference(features, labels, head, targets, loss, R)

    torch.testing.assert_close(stats["w"], w, rtol=1e-9, atol=0)
    torch.testing.assert_close(stats["g_ce"], g_ce, rtol=1e-9, atol=0)
    torch.testing.assert_close(stats["g_ptr"], g_ptr, rtol=1e-9, atol=0)
    torch.testing.assert_close(total, ref_total, rtol=1e-9, atol=0)
    (d_total,) = torch.autograd.grad(total, features)
    torch.testing.assert_close(d_total, ref_grad, rtol=1e-7, atol=1e-12)


def test_weighted_pseudo_gradient_is_one_over_R_of_ce_gradient():
    x, labels, body, head = make_batch(1)
    features = body(x)
    ce = F.cross_entropy(head(features), labels)
    R = 5.0
    total, stats = pseudo_task_loss(features, ce, R=R, generator=torch.Generator().manual_seed(0))
    (g_total,) = torch.autograd.grad(total, features, retain_graph=True)
    (g_ce,) = torch.autograd.grad(ce, features)
    g_ptr_weighted = g_total - g_ce
    ratio = g_ce.norm(dim=1).mean() / g_ptr_weighted.norm(dim=1).mean()
    torch.testing.assert_close(ratio, torch.tensor(R, dtype=ratio.dtype), rtol=1e-6, atol=0)


def test_no_gradient_flows_through_w():
    x, labels, body, head = make_batch(2)
    features = body(x)
    ce = F.cross_entropy(head(features), labels)
    targets = torch.zeros(B, D, dtype=torch.float64)
    total, stats = pseudo_task_loss(features, ce, R=2.0, targets=targets)
    (d_total,) = torch.autograd.grad(total, features)
    (d_ce,) = torch.autograd.grad(F.cross_entropy(head(features), labels), features)
    expected = (
        d_ce + stats["w"] * torch.autograd.grad(F.smooth_l1_loss(features, targets), features)[0]
    )
    torch.testing.assert_close(d_total, expected)
    assert not stats["w"].requires_grad


def test_targets_are_uniform_with_mean_m_and_reproducible():
    features = torch.zeros(400, 50, requires_grad=True)
    ce = (features * 0.01).sum()

    def drawn(seed):
        total, _ = pseudo_task_loss(
            features, ce, R=1.0, m=10.0, loss="l2", generator=torch.Generator().manual_seed(seed)
        )
        return total

    # With features at 0, the L2 term is the mean of t^2 = (2m)^2 / 3 for U[0, 2m).
    _, stats = pseudo_task_loss(
        features, ce, R=1.0, m=10.0, loss="l2", generator=torch.Generator().manual_seed(0)
    )
    assert stats["ptr_loss"].item() == pytest.approx(400.0 / 3, rel=0.02)
    assert drawn(3).item() == drawn(3).item()
    assert drawn(3).item() != drawn(4).item()


def test_w_is_finite_when_a_gradient_norm_is_zero():
    features = torch.ones(4, 3, requires_grad=True)
    ce = (features * 0.0).sum()  # zero CE gradient
    total, stats = pseudo_task_loss(features, ce, R=3.0, targets=torch.ones(4, 3))
    assert stats["w"].item() == 0.0  # zero PtR gradient too: targets equal the features
    assert torch.isfinite(total)
    ce2 = (features**2).sum()
    _, stats2 = pseudo_task_loss(features, ce2, R=3.0, targets=torch.ones(4, 3))
    assert torch.isfinite(stats2["w"]) and stats2["w"].item() == 0.0


def test_bf16_autocast_gives_float32_norms_and_finite_w():
    x, labels, body, head = make_batch(3)
    body, head, x = body.float(), head.float(), x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = body(x)
        assert features.dtype == torch.bfloat16
        ce = F.cross_entropy(head(features), labels)
        total, stats = pseudo_task_loss(features, ce, R=3.0, generator=torch.Generator())
    for key in ("w", "g_ce", "g_ptr"):
        assert stats[key].dtype == torch.float32
        assert torch.isfinite(stats[key]) and stats[key] > 0
    total.backward()
    assert torch.isfinite(body.weight.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"R": 0.0}, r"regularizer.R=0.0 is not allowed: it must be a finite number > 0"),
        ({"R": -1.0}, r"regularizer.R=-1.0"),
        ({"R": float("inf")}, r"regularizer.R=inf"),
        ({"R": 1.0, "loss": "huber"}, r"regularizer.loss='huber'.*one of \['l2', 'smooth_l1'\]"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    features = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        pseudo_task_loss(features, features.sum(), **kwargs)


def test_a_rule_lives_once_the_python_api_and_the_cli_agree(monkeypatch, make_cfg):
    """Tightening R's one rule changes what pseudo_task_loss, the regularizer and the CLI's
    train(cfg) accept, and all three say the same, before any data is loaded."""
    from pathlib import Path

    from ptr_lightning.core.errors import ConfigError
    from ptr_lightning.ptr import RATIO_RULE
    from ptr_lightning.regularizers import PseudoTask
    from ptr_lightning.run.train import train

    monkeypatch.setattr(RATIO_RULE, "test", lambda value: value >= 5)
    monkeypatch.setattr(RATIO_RULE, "allowed", ">= 5 (a tightened bound)")
    message = "regularizer.R=3 is not allowed: it must be >= 5 (a tightened bound)"
    features = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ConfigError) as pure:
        pseudo_task_loss(features, features.sum(), R=3)
    with pytest.raises(ConfigError) as module:
        PseudoTask(R=3)
    cfg = make_cfg("regularizer.R=3")
    with pytest.raises(ConfigError) as cli:
        train(cfg)
    assert str(pure.value) == str(module.value) == str(cli.value) == message
    assert not Path(cfg.paths.output_dir).exists()  # refused before anything was written
    PseudoTask(R=5)  # the new bound, not the old one, decides


# --- the paper's open choices: targets, m_mode, balance -------------------------------------


def test_each_kind_of_target_is_what_its_name_says():
    from ptr_lightning.ptr import TARGETS, draw_targets

    features = torch.rand(64, 32) * 3
    m = 1.5

    def draw(kind, seed=0):
        return TARGETS[kind](features, m, torch.Generator().manual_seed(seed))

    assert torch.equal(draw("uniform"), draw_targets(features, m, torch.Generator().manual_seed(0)))
    instance = draw("uniform_instance")
    assert torch.equal(instance, instance[:, :1].expand_as(instance))  # one value per instance
    assert instance[:, 0].unique().numel() == 64 and instance.min() >= 0 and instance.max() < 2 * m
    assert torch.equal(draw("constant"), torch.full_like(features, m))
    assert torch.equal(draw("zero"), torch.zeros_like(features))
    noise = draw("centred") - features  # U(-m, m) around the features: no pull, the same spread
    assert noise.abs().max() <= m and noise.mean().abs() < 0.05 and noise.std() > 0.8
    assert not torch.equal(draw("centred"), draw("centred", seed=1))


def test_deterministic_targets_leave_the_generator_alone():
    from ptr_lightning.ptr import TARGETS

    features = torch.rand(4, 3)
    for kind in ("constant", "zero"):
        generator = torch.Generator().manual_seed(0)
        before = generator.get_state()
        TARGETS[kind](features, 1.0, generator)
        assert torch.equal(generator.get_state(), before)


def test_m_modes():
    from ptr_lightning.ptr import M_MODES

    assert M_MODES["absolute"](2.0, 0.3) == 2.0
    assert M_MODES["features"](2.0, 0.3) == pytest.approx(0.6)
    with pytest.raises(RuntimeError, match="no feature mean"):
        M_MODES["features"](2.0, None)


@pytest.mark.parametrize("loss", ["smooth_l1", "l2"])
def test_parameter_balance_gives_one_over_R_at_the_parameters(loss):
    """||w dL_ptr/dtheta|| = ||dL_ce/dtheta|| / R over the body's parameters, against a direct
    computation with two plain backward passes."""
    x, labels, body, head = make_batch(4)
    features = body(x)
    ce = F.cross_entropy(head(features), labels)
    targets = torch.rand(B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = list(body.parameters())
    R = 3.0
    total, stats = pseudo_task_loss(
        features, ce, R=R, loss=loss, targets=targets, balance="parameters", parameters=params
    )
    ptr_loss = {"smooth_l1": F.smooth_l1_loss, "l2": F.mse_loss}[loss](features, targets)
    g_ce = torch.cat([g.flatten() for g in torch.autograd.grad(ce, params, retain_graph=True)])
    g_ptr = torch.cat(
        [g.flatten() for g in torch.autograd.grad(ptr_loss, params, retain_graph=True)]
    )
    torch.testing.assert_close(stats["g_ce"], g_ce.norm(), rtol=1e-9, atol=0)
    torch.testing.assert_close(stats["g_ptr"], g_ptr.norm(), rtol=1e-9, atol=0)
    torch.testing.assert_close((stats["w"] * g_ptr).norm(), g_ce.norm() / R, rtol=1e-9, atol=0)
    assert all(p.grad is None for p in params)  # measured without touching .grad
    # the step's own gradient is still L_ce + w L_ptr
    (d_total,) = torch.autograd.grad(total, features)
    (d_ce,) = torch.autograd.grad(F.cross_entropy(head(features), labels), features)
    (d_ptr,) = torch.autograd.grad(ptr_loss, features)
    torch.testing.assert_close(d_total, d_ce + stats["w"] * d_ptr)


def test_parameter_balance_needs_the_parameters():
    features = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="parameters"):
        pseudo_task_loss(features, features.sum(), R=1.0, balance="parameters")
    with pytest.raises(ValueError, match=r"regularizer.balance='weights'"):
        pseudo_task_loss(features, features.sum(), R=1.0, balance="weights")


def test_batch_balance_bounds_the_batch_summed_push_at_one_over_R():
    """balance=batch: ||sum_j w dL_ptr/drep_j|| = ||sum_j dL_ce/drep_j|| / R, against autograd;
    the per-instance norms are then not 1/R of each other (the features' balance would be)."""
    x, labels, body, head = make_batch(5)
    features = body(x)
    ce = F.cross_entropy(head(features), labels)
    targets = torch.full((B, D), 2.0, dtype=torch.float64)  # one pull for every instance
    R = 3.0
    total, stats = pseudo_task_loss(features, ce, R=R, targets=targets, balance="batch")
    (d_total,) = torch.autograd.grad(total, features, retain_graph=True)
    (d_ce,) = torch.autograd.grad(ce, features)
    d_ptr = d_total - d_ce
    torch.testing.assert_close(stats["g_ce"], d_ce.sum(0).norm(), rtol=1e-12, atol=0)
    torch.testing.assert_close(stats["w"] * stats["g_ptr"], d_ptr.sum(0).norm(), rtol=1e-12, atol=0)
    torch.testing.assert_close(d_ptr.sum(0).norm(), d_ce.sum(0).norm() / R, rtol=1e-9, atol=0)
    per_instance = d_ce.norm(dim=1).mean() / d_ptr.norm(dim=1).mean()
    assert per_instance.item() > 1.5 * R  # CE's pushes partly cancel over the batch, PtR's add up


@pytest.mark.parametrize("loss", ["smooth_l1", "l2"])
def test_pull_share_matches_a_monte_carlo_estimate_over_the_targets(loss):
    """ptr/pull_frac = ||E_t g||^2 / E_t ||g||^2 of the pseudo-task's gradient g at the features,
    against 20000 draws of each kind of target (SML1: features on both sides of |rep - t| = 1)."""
    from ptr_lightning.ptr import PULL_SHARES, REGRESSION_GRADIENTS, TARGETS

    assert PULL_SHARES.keys() == TARGETS.keys()
    features = torch.tensor(
        [[-0.5, 0.0, 0.3, 1.0, 2.5], [0.1, 0.8, 1.7, 3.2, 0.05]], dtype=torch.float64
    )
    m, draws = 0.8, 20000
    for kind in TARGETS:
        repeated = features.repeat(draws, 1)  # each draw a batch of its own
        targets = TARGETS[kind](repeated, m, torch.Generator().manual_seed(1)).double()
        g = REGRESSION_GRADIENTS[loss](repeated, targets).view(draws, *features.shape)
        monte_carlo = g.mean(0).square().sum() / g.square().mean(0).sum()
        share = PULL_SHARES[kind](features, m, loss)
        assert share.item() == pytest.approx(monte_carlo.item(), abs=0.005), kind
    uniform = PULL_SHARES["uniform"](features, m, loss).item()
    assert 0.75 < uniform < 0.9  # these features: most of uniform targets' energy is the pull
    at_m = PULL_SHARES["uniform"](torch.full((2, 3), m, dtype=torch.float64), m, loss)
    assert at_m.item() == pytest.approx(0.0, abs=1e-9)  # features at m: all noise
    assert PULL_SHARES["uniform"](features, 0.0, loss).item() == 1.0  # t = 0 for sure


def test_without_m_the_backbone_gives_it_unless_m_is_relative_to_the_features():
    """regularizer.m_mode=features makes regularizer.m a multiplier of the features' mean, 1 by
    default whatever the backbone (VGG-16's m = 12.5 would scale the targets twice)."""
    from ptr_lightning.run.build import build_components
    from tests.conftest import compose_config

    def built_m(*overrides):
        cfg = compose_config([*overrides, "paths.output_dir=/tmp/unused"])
        return cfg.regularizer.m, build_components(cfg).regularizer.m

    assert built_m("model=vgg16") == (12.5, 12.5)
    assert built_m("model=vgg16", "regularizer.m_mode=features") == (1.0, 1.0)
    assert built_m("model=vgg16", "regularizer.m_mode=features", "regularizer.m=2") == (2, 2.0)
    assert built_m("model=resnet50", "regularizer.m_mode=features") == (1.0, 1.0)
