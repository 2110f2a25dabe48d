"""The regularizers against direct computations of their formulas, on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.regularizers import (
    L2SP,
    BatchSpectralShrinkage,
    FeatureNormPenalty,
    LearningWithoutForgetting,
    PairwiseConfusion,
    PseudoTask,
    StepTensors,
)

DT = torch.float64


def tiny_model(seed: int = 0) -> tuple[nn.Module, nn.Sequential, nn.Linear]:
    """(backbone 4 -> 3 features, head dropout + Linear(3, 2), source classifier Linear(3, 5))."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU()).to(DT)
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 2)).to(DT)
    return backbone, head, nn.Linear(3, 5).to(DT)


def step_for(backbone: nn.Module, head: nn.Module, inputs: torch.Tensor, labels=None):
    features = backbone(inputs)
    logits = head(features)
    if labels is None:
        labels = torch.zeros(inputs.shape[0], dtype=torch.long)
    return StepTensors(inputs, features, logits, labels)


# --- L2-SP -------------------------------------------------------------------------------------


def test_l2sp_value_and_gradient():
    backbone, head, source = tiny_model()
    reg = L2SP(alpha=0.3, beta=0.05)
    reg.attach(backbone, head, source)
    w0 = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p))
    ce = torch.tensor(0.7, dtype=DT)
    total, stats = reg(ce, step_for(backbone, head, torch.randn(4, 4, dtype=DT)))

    source_sq = sum(((p - w0[n]) ** 2).sum() for n, p in backbone.named_parameters())
    head_sq = sum((p**2).sum() for p in head.parameters())
    expected = 0.3 / 2 * source_sq + 0.05 / 2 * head_sq
    assert_close(total, ce + expected.detach())
    assert_close(stats["train/reg_loss"], expected.detach())
    assert_close(stats["l2sp/source_dist_sq"], source_sq.detach())
    assert_close(stats["l2sp/head_norm_sq"], head_sq.detach())
    assert all(not s.requires_grad for s in stats.values())

    total.backward()
    for name, p in backbone.named_parameters():
        assert_close(p.grad, 0.3 * (p.detach() - w0[name]))
    for p in head.parameters():
        assert_close(p.grad, 0.05 * p.detach())


def test_l2sp_reference_is_a_snapshot_in_buffers():
    backbone, head, source = tiny_model()
    reg = L2SP()
    reg.attach(backbone, head, source)
    w0 = copy.deepcopy(backbone.state_dict())
    with torch.no_grad():
        backbone[0].weight.add_(1.0)
    assert_close(reg.w0_0__weight, w0["0.weight"])
    # Only the reference weights, not the (LightningModule-owned) model, are in its state.
    names = {n for n, _ in backbone.named_parameters()}
    assert set(reg.state_dict()) == {L2SP.buffer_name(n) for n in names}
    assert list(reg.parameters()) == []
    assert reg.replaces_weight_decay
    assert {id(p) for p in reg.penalized_parameters()} == {
        id(p) for p in [*backbone.parameters(), *head.parameters()]
    }


def test_l2sp_reference_follows_dtype_and_state_dict():
    backbone, head, source = tiny_model()
    reg = L2SP()
    reg.attach(backbone, head, source)
    saved = copy.deepcopy(reg.state_dict())

    reg.to(torch.float32)
    assert all(b.dtype == torch.float32 for b in reg.buffers())
    reg.to(DT)
    assert all(b.dtype == DT for b in reg.buffers())

    # A resumed run re-attaches to a freshly built model, then loads the checkpoint.
    fresh_backbone, fresh_head, fresh_source = tiny_model(seed=1)
    fresh = L2SP()
    fresh.attach(fresh_backbone, fresh_head, fresh_source)
    assert not torch.equal(fresh.w0_0__weight, saved["w0_0__weight"])
    fresh.load_state_dict(saved)
    for name, value in saved.items():
        assert_close(getattr(fresh, name), value)


def test_l2sp_is_zero_at_the_start_except_for_the_head():
    backbone, head, source = tiny_model()
    reg = L2SP(alpha=1.0, beta=0.0)
    reg.attach(backbone, head, source)
    total, _ = reg(
        torch.tensor(0.5, dtype=DT), step_for(backbone, head, torch.randn(2, 4, dtype=DT))
    )
    assert_close(total, torch.tensor(0.5, dtype=DT))


def test_l2sp_rejects_negative_weights():
    with pytest.raises(ValueError):
        L2SP(alpha=-1.0)
    with pytest.raises(ValueError):
        L2SP(beta=-1.0)


# --- LwF ---------------------------------------------------------------------------------------


def test_lwf_value_and_gradient():
    backbone, head, source = tiny_model()
    reg = LearningWithoutForgetting(weight=0.7, temperature=2.0)
    reg.attach(backbone, head, source)
    inputs = torch.randn(6, 4, dtype=DT)
    backbone.eval()
    with torch.no_grad():
        teacher_logits = source(backbone(inputs))
        # Training moves the student's backbone and old head; the teacher must not follow.
        for p in [*backbone.parameters(), *reg.old_head.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
    reg.eval()  # dropout in the old head off, for a deterministic reference

    features = backbone(inputs).detach().requires_grad_(True)
    step = StepTensors(inputs, features, head(features), torch.zeros(6, dtype=torch.long))
    total, stats = reg(torch.tensor(0.0, dtype=DT), step)

    w, b = reg.old_head[-1].weight.detach(), reg.old_head[-1].bias.detach()
    old_logits = features.detach() @ w.T + b
    p = torch.softmax(teacher_logits / 2.0, dim=-1)
    q = torch.softmax(old_logits / 2.0, dim=-1)
    kl = (p * (p.log() - q.log())).sum(dim=-1).mean()
    assert_close(stats["lwf/kl"], kl)
    assert_close(total, 0.7 * kl)
    assert_close(stats["train/reg_loss"], 0.7 * kl)
    agreement = (old_logits.argmax(-1) == teacher_logits.argmax(-1)).to(torch.float32).mean()
    assert_close(stats["lwf/agreement"], agreement)

    total.backward()
    # d KL / d z = (q - p) / (T * B) for the student logits z.
    dz = 0.7 * (q - p) / (2.0 * 6)
    assert_close(features.grad, dz @ w)
    assert_close(reg.old_head[-1].weight.grad, dz.T @ features.detach())
    assert all(p.grad is None for p in reg.teacher.parameters())


def test_lwf_is_zero_before_training_moves_anything():
    backbone, head, source = tiny_model()
    reg = LearningWithoutForgetting()
    reg.attach(backbone, head, source)
    reg.eval()
    backbone.eval()
    total, stats = reg(
        torch.tensor(0.2, dtype=DT), step_for(backbone, head, torch.randn(3, 4, dtype=DT))
    )
    assert_close(total, torch.tensor(0.2, dtype=DT))
    assert_close(stats["lwf/agreement"], torch.tensor(1.0))


def test_lwf_teacher_stays_frozen_and_in_eval_mode():
    backbone, head, source = tiny_model()
    reg = LearningWithoutForgetting()
    reg.attach(backbone, head, source)
    wrapper = nn.ModuleDict({"backbone": backbone, "head": head, "reg": reg})
    wrapper.train()
    assert reg.training and reg.old_head.training
    assert not any(m.training for m in reg.teacher.modules())
    assert not any(p.requires_grad for p in reg.teacher.parameters())
    trainable = {id(p) for p in reg.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in reg.old_head.parameters()}

    bn_stats = copy.deepcopy(reg.teacher[0][1].state_dict())
    reg.teacher[1].training = True  # a caller flipping flags directly
    total, _ = reg(
        torch.tensor(0.0, dtype=DT), step_for(backbone, head, torch.randn(8, 4, dtype=DT))
    )
    total.backward()
    assert not any(m.training for m in reg.teacher.modules())
    for name, value in reg.teacher[0][1].state_dict().items():
        assert_close(value, bn_stats[name])
    assert "teacher.0.0.weight" in reg.state_dict() and "old_head.1.weight" in reg.state_dict()


def test_lwf_needs_the_source_classifier():
    backbone, head, _ = tiny_model()
    with pytest.raises(ValueError, match="source_classifier"):
        LearningWithoutForgetting().attach(backbone, head, None)


# --- Pairwise Confusion ------------------------------------------------------------------------


def pc_reference(logits: torch.Tensor, labels: torch.Tensor, weight: float) -> torch.Tensor:
    """Dubey et al.'s confusion term, pair by pair, with lambda = weight * number of classes."""
    n = logits.shape[0] // 2
    probs = torch.softmax(logits, dim=-1)
    total = logits.new_zeros(())
    for i in range(n):
        if labels[i] != labels[n + i]:
            total = total + ((probs[i] - probs[n + i]) ** 2).sum()
    return weight * logits.shape[-1] * total / (2 * n)


def test_pairwise_confusion_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(8, 5, dtype=DT, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 1, 2, 0])  # pairs (0,4) (1,1) (2,2) (3,0)
    reg = PairwiseConfusion(weight=0.3)
    step = StepTensors(torch.empty(8, 1), torch.empty(8, 1), logits, labels)
    total, stats = reg(torch.tensor(0.0, dtype=DT), step)
    ref_logits = logits.detach().clone().requires_grad_(True)
    expected = pc_reference(ref_logits, labels, 0.3)
    # softmax runs in float32 inside the regularizer
    assert_close(total, expected.detach(), check_dtype=False, rtol=1e-5, atol=1e-6)
    assert_close(stats["pc/pairs"], torch.tensor(2.0))
    assert_close(stats["train/reg_loss"], total.detach(), check_dtype=False)

    total.backward()
    expected.backward()
    assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-6)
    # Rows of same-label pairs get no gradient.
    for row in (1, 2, 5, 6):
        assert_close(logits.grad[row], torch.zeros(5, dtype=DT))


def test_pairwise_confusion_weight_scales_with_the_number_of_classes():
    torch.manual_seed(3)
    logits = torch.randn(6, 4, dtype=DT)
    labels = torch.tensor([0, 1, 2, 1, 3, 0])
    # Four more classes that no image predicts: the same probabilities, twice the classes.
    wider = torch.cat([logits, torch.full((6, 4), -1e4, dtype=DT)], dim=1)
    reg = PairwiseConfusion(weight=0.1)
    zero = torch.tensor(0.0, dtype=DT)
    narrow_term, _ = reg(zero, StepTensors(logits, logits, logits, labels))
    wide_term, _ = reg(zero, StepTensors(wider, wider, wider, labels))
    assert narrow_term > 0
    assert_close(wide_term, 2 * narrow_term, check_dtype=False, rtol=1e-5, atol=0)
    # lambda = weight * K = 0.1 * 4; the three pairs (0, 1), (1, 3), (2, 0) all differ.
    probs = torch.softmax(logits, dim=-1)
    distances = (probs[:3] - probs[3:]).pow(2).sum()
    assert_close(narrow_term, 0.4 * distances / 6, check_dtype=False, rtol=1e-5, atol=0)
    # A weight meant as lambda itself (the old meaning) is refused, not multiplied by K.
    with pytest.raises(ConfigError, match=r"regularizer.weight=10 .*lambda / number of classes"):
        PairwiseConfusion(weight=10)


def test_pairwise_confusion_ignores_same_label_pairs():
    torch.manual_seed(1)
    logits = torch.randn(6, 4, dtype=DT, requires_grad=True)
    labels = torch.tensor([3, 1, 2, 3, 1, 2])
    reg = PairwiseConfusion()
    total, stats = reg(torch.tensor(0.5, dtype=DT), StepTensors(logits, logits, logits, labels))
    assert_close(total, torch.tensor(0.5, dtype=DT), check_dtype=False)
    assert_close(stats["pc/pairs"], torch.tensor(0.0))
    assert_close(stats["pc/distance_sq"], torch.tensor(0.0))


def test_pairwise_confusion_drops_the_odd_sample():
    torch.manual_seed(2)
    logits = torch.randn(7, 4, dtype=DT, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 2, 0, 3])
    reg = PairwiseConfusion(weight=0.2)
    total, _ = reg(torch.tensor(0.0, dtype=DT), StepTensors(logits, logits, logits, labels))
    expected = pc_reference(logits.detach()[:6], labels[:6], 0.2)
    assert_close(total, expected, check_dtype=False, rtol=1e-5, atol=1e-6)
    total.backward()
    assert_close(logits.grad[6], torch.zeros(4, dtype=DT))
    assert logits.grad[:6].abs().sum() > 0

    one = torch.randn(1, 4, requires_grad=True)
    total, stats = reg(torch.tensor(0.1), StepTensors(one, one, one, torch.tensor([0])))
    assert_close(total, torch.tensor(0.1))
    assert_close(stats["pc/pairs"], torch.tensor(0.0))


# --- BSS ---------------------------------------------------------------------------------------


def features_with_singular_values(b: int, d: int, values: list[float]) -> torch.Tensor:
    torch.manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(b, len(values), dtype=DT))
    v, _ = torch.linalg.qr(torch.randn(d, len(values), dtype=DT))
    return u @ torch.diag(torch.tensor(values, dtype=DT)) @ v.T


@pytest.mark.parametrize("k", [1, 2, 3, 9])
def test_bss_picks_the_smallest_singular_values(k: int):
    features = features_with_singular_values(6, 4, [5.0, 3.0, 0.5])
    # 4 columns but rank 3: the fourth singular value is 0 and must count as the smallest.
    values = [0.0, 0.25, 9.0, 25.0]
    reg = BatchSpectralShrinkage(eta=0.1, k=k)
    step = StepTensors(features, features, features, torch.zeros(6, dtype=torch.long))
    total, stats = reg(torch.tensor(1.0, dtype=DT), step)
    expected = sum(values[: min(k, 4)])
    assert_close(stats["bss/smallest_sv_sq"], torch.tensor(expected, dtype=DT), atol=1e-9, rtol=0)
    assert_close(stats["bss/largest_sv_sq"], torch.tensor(25.0, dtype=DT))
    assert_close(total, 1.0 + 0.1 * torch.tensor(expected, dtype=DT))


def test_bss_value_and_gradient_match_the_eigendecomposition():
    torch.manual_seed(4)
    for b, d in [(5, 3), (2, 4)]:  # fewer and more features than samples
        features = torch.randn(b, d, dtype=DT, requires_grad=True)
        reg = BatchSpectralShrinkage(eta=0.001, k=1)
        step = StepTensors(features, features, features, torch.zeros(b, dtype=torch.long))
        total, _ = reg(torch.tensor(0.0, dtype=DT), step)
        # sigma_min^2 is the smallest eigenvalue of F^T F (or F F^T); its gradient is 2 F v v^T.
        gram = features.detach().T @ features.detach() if b >= d else None
        if gram is not None:
            evals, evecs = torch.linalg.eigh(gram)
            v = evecs[:, :1]
            grad = 2 * features.detach() @ v @ v.T
        else:
            evals, evecs = torch.linalg.eigh(features.detach() @ features.detach().T)
            u = evecs[:, :1]
            grad = 2 * u @ u.T @ features.detach()
        assert_close(total, 0.001 * evals[0])
        total.backward()
        assert_close(features.grad, 0.001 * grad)


def test_bss_runs_in_float32_for_half_features():
    features = torch.randn(4, 3).to(torch.bfloat16).requires_grad_(True)
    reg = BatchSpectralShrinkage()
    step = StepTensors(features, features, features, torch.zeros(4, dtype=torch.long))
    total, stats = reg(torch.tensor(0.0), step)
    assert stats["bss/smallest_sv_sq"].dtype == torch.float32
    total.backward()
    assert features.grad is not None and features.grad.dtype == torch.bfloat16


def test_bss_rejects_bad_arguments():
    with pytest.raises(ValueError):
        BatchSpectralShrinkage(k=0)
    with pytest.raises(ValueError):
        BatchSpectralShrinkage(eta=-1.0)


# --- PtR and FNP -----------------------------------------------------------------------------


def ptr_step(seed: int = 0, batch: int = 6):
    backbone, head, _ = tiny_model(seed)
    inputs = torch.randn(batch, 4, dtype=DT, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(batch) % 2
    step = step_for(backbone, head, inputs, labels)
    ce = nn.functional.cross_entropy(step.logits, labels)
    return step, ce


def drawn_targets(regularizer: PseudoTask, step: StepTensors, ce: torch.Tensor) -> torch.Tensor:
    """The targets the regularizer regressed to, read back from d total / d features."""
    total, stats = regularizer(ce, step)
    (d_total,) = torch.autograd.grad(total, step.features, retain_graph=True)
    (d_ce,) = torch.autograd.grad(ce, step.features, retain_graph=True)
    # L2: d (w * mean (x - t)^2) / dx = 2 w (x - t) / N
    grad_ptr = (d_total - d_ce) * step.features.numel() / (2 * stats[names.PTR_W])
    return step.features.detach() - grad_ptr


def test_ptr_draws_from_its_own_stream_and_leaves_the_global_one_alone():
    step, ce = ptr_step()
    regularizer = PseudoTask(R=3.0, m=2.0, loss="l2", seed=5)
    regularizer.switch(True, epoch=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = drawn_targets(regularizer, step, ce)
    assert torch.equal(torch.get_rng_state(), before)  # dropout and augmentation unaffected
    assert first.min() >= 0 and first.max() < 4.0  # U[0, 2m)
    again = PseudoTask(R=3.0, m=2.0, loss="l2", seed=5)
    again.switch(True, epoch=0)
    assert_close(drawn_targets(again, step, ce), first)  # the seed decides the targets
    other = PseudoTask(R=3.0, m=2.0, loss="l2", seed=6)
    other.switch(True, epoch=0)
    assert not torch.allclose(drawn_targets(other, step, ce), first)


def test_ptr_stream_and_switch_round_trip_through_the_state_dict():
    step, ce = ptr_step()
    regularizer = PseudoTask(R=3.0, m=2.0, loss="l2", seed=5)
    regularizer.switch(True, epoch=4)
    drawn_targets(regularizer, step, ce)  # advance the stream
    state = copy.deepcopy(regularizer.state_dict())
    expected = drawn_targets(regularizer, step, ce)

    restored = PseudoTask(R=3.0, m=2.0, loss="l2", seed=5)
    restored.load_state_dict(state)
    assert restored.active and restored.switch_epoch == 4
    assert_close(drawn_targets(restored, step, ce), expected)  # continues where it was


def test_two_resumes_across_an_off_epoch_keep_the_targets_of_the_uninterrupted_run(tmp_path):
    """switch=epoch: on (a draw), checkpoint, resume; an epoch off (no draw), checkpoint,
    resume; on again: the targets continue the stream, not a reseeded one."""
    step, ce = ptr_step()

    def make():
        return PseudoTask(R=3.0, m=2.0, loss="l2", seed=5, switch="epoch")

    def resumed(regularizer, name):
        torch.save({"state_dict": regularizer.state_dict()}, tmp_path / name)
        restored = make()
        restored.load_state_dict(torch.load(tmp_path / name, weights_only=True)["state_dict"])
        return restored

    whole, cut = make(), make()
    for regularizer in (whole, cut):
        regularizer.switch(True, epoch=0)
        first = drawn_targets(regularizer, step, ce)
    cut = resumed(cut, "epoch0.ckpt")
    for regularizer in (whole, cut):
        regularizer.switch(False, epoch=1)
        assert regularizer(ce, step) == (ce, {})  # off: nothing drawn
    cut = resumed(cut, "epoch1.ckpt")
    for regularizer in (whole, cut):
        regularizer.switch(True, epoch=2)
    expected = drawn_targets(whole, step, ce)
    assert not torch.allclose(expected, first)
    assert_close(drawn_targets(cut, step, ce), expected)


def test_an_inactive_pseudo_task_adds_nothing():
    step, ce = ptr_step()
    regularizer = PseudoTask(R=3.0)
    total, stats = regularizer(ce, step)
    assert total is ce and stats == {} and regularizer.switch_epoch is None


def test_fnp_regresses_the_features_to_zero():
    step, ce = ptr_step()
    fnp = FeatureNormPenalty(R=2.0, loss="l2")
    fnp.switch(True, epoch=0)
    assert_close(drawn_targets(fnp, step, ce), torch.zeros_like(step.features), atol=1e-12, rtol=0)
    total, stats = fnp(ce, step)
    expected = ce + stats[names.PTR_W] * step.features.pow(2).mean()
    assert_close(total, expected)
    assert stats[names.PTR_W] > 0


def test_m_mode_features_fixes_m_from_the_mean_measured_while_off():
    backbone, head, _ = tiny_model()
    regularizer = PseudoTask(R=2.0, m=3.0, loss="l2", targets="constant", m_mode="features")
    seen = []
    for seed in range(3):  # an epoch with PtR off: the regularizer only measures
        step, ce = ptr_step(seed=seed, batch=4 + seed)
        assert regularizer(ce, step) == (ce, {})
        seen.append(step.features.detach())
    regularizer.switch(True, epoch=0)
    feature_mean = torch.cat([f.flatten() for f in seen]).mean()
    assert regularizer.feature_mean == pytest.approx(float(feature_mean), rel=1e-6)
    step, ce = ptr_step(seed=9)
    targets = drawn_targets(regularizer, step, ce)
    assert_close(targets, torch.full_like(targets, 3.0 * float(feature_mean)))
    _, stats = regularizer(ce, step)
    assert stats[names.PTR_M] == pytest.approx(3.0 * float(feature_mean))

    # Fixed at the first switch-on and kept in the checkpoint; later epochs do not move it.
    restored = PseudoTask(R=2.0, m=3.0, loss="l2", targets="constant", m_mode="features")
    restored.load_state_dict(copy.deepcopy(regularizer.state_dict()))
    assert restored.feature_mean == regularizer.feature_mean
    restored.switch(False, epoch=1)
    restored(ce, step)
    restored.switch(True, epoch=2)
    assert restored.feature_mean == regularizer.feature_mean and restored.switch_epoch == 0


def test_linear_frac_counts_where_smooth_l1_saturates_on_telemetry_steps():
    torch.manual_seed(0)
    features = torch.tensor([[0.0, 2.5, 1.2], [-0.5, 1.0, 3.0]], requires_grad=True)
    # t = 1: |rep - t| = [1, 1.5, 0.2], [1.5, 0, 2], beyond 1 (the linear part) three times
    regularizer = PseudoTask(R=3.0, m=1.0, targets="constant")
    regularizer.switch(True, epoch=0)
    logits = features @ torch.randn(3, 2)
    ce = nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    step = StepTensors(features, features, logits, torch.tensor([0, 1]))
    _, stats = regularizer(ce, step)
    assert names.PTR_LINEAR_FRAC not in stats  # only measured on telemetry steps
    _, stats = regularizer(ce, StepTensors(features, features, logits, step.labels, measure=True))
    assert stats[names.PTR_LINEAR_FRAC].item() == pytest.approx(3 / 6)
    l2 = PseudoTask(R=3.0, targets="constant", loss="l2")
    l2.switch(True, epoch=0)
    _, stats = l2(ce, StepTensors(features, features, logits, step.labels, measure=True))
    assert names.PTR_LINEAR_FRAC not in stats  # L2 never saturates


def test_fnp_is_ptr_with_zero_targets():
    step, ce = ptr_step()
    fnp, zero = FeatureNormPenalty(R=2.0, loss="l2"), PseudoTask(R=2.0, loss="l2", targets="zero")
    for regularizer in (fnp, zero):
        regularizer.switch(True, epoch=0)
    assert_close(fnp(ce, step)[0], zero(ce, step)[0])


def test_feature_norm_penalty_value_and_gradient():
    from ptr_lightning.regularizers import FeatureNorm

    torch.manual_seed(5)
    features = torch.randn(6, 4, dtype=DT, requires_grad=True)
    reg = FeatureNorm(weight=0.2)
    step = StepTensors(features, features, features, torch.zeros(6, dtype=torch.long))
    total, stats = reg(torch.tensor(0.5, dtype=DT), step)
    norm_sq = (features.detach() ** 2).sum(dim=1).mean()
    assert_close(stats[names.FEATURE_NORM_SQ], norm_sq.float())
    assert_close(total, 0.5 + 0.2 * norm_sq)
    total.backward()
    assert_close(features.grad, 2 * 0.2 * features.detach() / 6)
    assert reg.active and not reg.gated and reg.feature_term
    with pytest.raises(ValueError, match="regularizer.weight"):
        FeatureNorm(weight=-1.0)
