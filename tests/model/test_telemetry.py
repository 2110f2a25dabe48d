"""Telemetry: its measurements against direct computations, and its rows in metrics.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ptr_lightning.core import names
from ptr_lightning.model.prediction_metrics import entropy_bits
from ptr_lightning.model.telemetry import (
    coherence,
    feature_statistics,
    step_telemetry,
    summed_norm,
)
from ptr_lightning.run.train import train

DT = torch.float64


def test_step_telemetry_against_per_instance_and_parameter_gradients():
    torch.manual_seed(0)
    body, head = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    x, labels = torch.randn(6, 5, dtype=DT), torch.tensor([0, 1, 2, 0, 1, 2])
    features = torch.relu(body(x))
    ce = F.cross_entropy(head(features), labels)
    targets = torch.rand(6, 4, dtype=DT)
    term = 0.3 * F.mse_loss(features, targets)
    stats = step_telemetry(ce, term, features, list(body.parameters()))

    W, b = head.weight.detach(), head.bias.detach()
    own_ce = vmap(grad(lambda f, y: F.cross_entropy((f @ W.T + b)[None], y[None])))(
        features.detach(), labels
    )  # g_j: instance j's own gradient
    own_ptr = 0.3 * 2 * (features.detach() - targets) / 4  # d(0.3 * mean_d (f - t)^2) / df

    def expected_coherence(g):
        return (g.mean(0).norm() ** 2 / (g.norm(dim=1) ** 2).mean()).item()

    assert stats[names.GRAD_COHERENCE_CE].item() == pytest.approx(expected_coherence(own_ce))
    assert stats[names.GRAD_COHERENCE_PTR].item() == pytest.approx(expected_coherence(own_ptr))
    assert stats[names.GRAD_SUM_CE].item() == pytest.approx(own_ce.mean(0).norm().item())
    assert stats[names.GRAD_SUM_PTR].item() == pytest.approx(own_ptr.mean(0).norm().item())

    def flat(gs):
        return torch.cat([g.flatten() for g in gs])

    g_ce = flat(torch.autograd.grad(ce, list(body.parameters()), retain_graph=True))
    g_ptr = flat(torch.autograd.grad(term, list(body.parameters()), retain_graph=True))
    assert stats[names.GRAD_PARAM_CE].item() == pytest.approx(g_ce.norm().item())
    assert stats[names.GRAD_PARAM_PTR].item() == pytest.approx(g_ptr.norm().item())
    cos = (g_ce @ g_ptr / (g_ce.norm() * g_ptr.norm())).item()
    assert stats[names.GRAD_PARAM_COS].item() == pytest.approx(cos)
    only_ce = step_telemetry(ce, None, features, list(body.parameters()))
    assert only_ce[names.GRAD_PARAM_CE] == stats[names.GRAD_PARAM_CE]
    assert names.GRAD_COHERENCE_PTR not in only_ce and names.GRAD_PARAM_COS not in only_ce
    assert all(p.grad is None for p in body.parameters())
    (ce + term).backward()  # the graph survived for the step's own backward


def test_coherence_bounds_and_feature_statistics():
    rows = torch.randn(1, 8).expand(5, 8)
    assert coherence(rows).item() == pytest.approx(1.0)  # every instance pushes alike
    opposite = torch.cat([rows[:1], -rows[:1]])
    assert coherence(opposite).item() == pytest.approx(0.0)
    assert summed_norm(opposite).item() == pytest.approx(0.0)
    assert coherence(torch.zeros(3, 2)).item() == 0.0
    stats = feature_statistics(torch.tensor([[0.0, 2.0], [0.0, 6.0]]))
    assert stats[names.FEAT_MEAN].item() == 2.0 and stats[names.FEAT_ZERO_FRAC].item() == 0.5
    assert stats[names.FEAT_STD].item() == pytest.approx(torch.tensor([0.0, 2, 0, 6]).std().item())
    assert entropy_bits(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])).tolist() == [1.0, 0.0]


def read_rows(run: Path) -> list[dict[str, str]]:
    with open(run / names.CSV_METRICS) as f:
        return list(csv.DictReader(f))


def column(rows, key):
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def test_telemetry_leaves_training_unchanged_and_lands_in_metrics_csv(make_cfg):
    """Identical weights with telemetry at every other step and off (deterministic CPU), and
    every telemetry key at its own step in metrics.csv; with regularizer.balance=batch the
    pseudo-task's batch-summed push is 1/R of the CE's there."""
    common = (
        "regularizer.T=100",
        "trainer.deterministic=true",
        "seed=1",
        "trainer.max_epochs=2",
        "regularizer.balance=batch",
        "regularizer.R=4",
    )
    measured_cfg = make_cfg(*common, "telemetry.every_n_steps=2", out="on")
    measured = train(measured_cfg)
    plain = train(make_cfg(*common, "telemetry.every_n_steps=0", out="off"))
    assert measured == pytest.approx({**plain, "seconds": measured["seconds"]})
    weights = [
        torch.load(Path(cfg_out) / names.LAST_CHECKPOINT, weights_only=True)["state_dict"]
        for cfg_out in (
            measured_cfg.paths.output_dir,
            Path(measured_cfg.paths.output_dir).parent / "off",
        )
    ]
    for key, value in weights[0].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, weights[1][key]), key

    rows = read_rows(Path(measured_cfg.paths.output_dir))
    steps = sorted(column(rows, names.TRAIN_CE))  # TINY: 3 steps per epoch, 2 epochs
    assert steps == list(range(6))
    for key in (
        names.FEAT_MEAN,
        names.FEAT_STD,
        names.FEAT_ZERO_FRAC,
        names.GRAD_COHERENCE_CE,
        names.GRAD_SUM_CE,
        names.GRAD_PARAM_CE,
        names.HEAD_WEIGHT_NORM,
    ):
        assert sorted(column(rows, key)) == [0, 2, 4], key
    # The pseudo-task switches on after epoch 0 (steps 0-2): its keys from then on.
    for key in (
        names.GRAD_COHERENCE_PTR,
        names.GRAD_SUM_PTR,
        names.GRAD_PARAM_PTR,
        names.GRAD_PARAM_COS,
        names.PTR_LINEAR_FRAC,
        names.PTR_PULL_FRAC,
    ):
        assert sorted(column(rows, key)) == [4], key
    summed_ptr, summed_ce = column(rows, names.GRAD_SUM_PTR), column(rows, names.GRAD_SUM_CE)
    assert summed_ptr[4] / summed_ce[4] == pytest.approx(1 / 4, rel=1e-4)  # balance=batch
    assert 0 < column(rows, names.PTR_PULL_FRAC)[4] < 1  # uniform targets: pull and noise
    assert all(0 <= v <= 1 for v in column(rows, names.GRAD_COHERENCE_CE).values())
    assert set(column(rows, names.PTR_M).values()) == {1.0}
    entropies = [float(r[names.VAL_ENTROPY]) for r in rows if r.get(names.VAL_ENTROPY)]
    assert len(entropies) == 2 and all(0 <= e <= math.log2(3) for e in entropies)
    # Every step's cross-entropy around the switch, equal to the step's own train/ce.
    assert column(rows, names.TRAIN_CE_AROUND_SWITCH) == column(rows, names.TRAIN_CE)

    quiet = read_rows(Path(measured_cfg.paths.output_dir).parent / "off")
    assert not any(r.get(names.FEAT_MEAN) or r.get(names.VAL_ENTROPY) for r in quiet)


def test_switch_window_writes_each_step_once_and_survives_a_checkpoint():
    from types import SimpleNamespace

    from ptr_lightning.model.switch_window import SwitchWindow

    written = []
    module = SimpleNamespace(
        regularizer=SimpleNamespace(active=False),
        log_at=lambda step, row: written.append((step, float(row[names.TRAIN_CE_AROUND_SWITCH]))),
    )

    def step(window, i, active):
        module.regularizer.active = active
        outputs = {"step": i, names.TRAIN_CE: torch.tensor(float(i))}
        window.on_train_batch_end(None, module, outputs, None, i)

    window = SwitchWindow(2)
    for i in range(4):
        step(window, i, active=False)  # keeps the last two: steps 2 and 3
    assert written == []
    resumed = SwitchWindow(2)
    resumed.load_state_dict(window.state_dict())  # a checkpoint at the epoch's end
    for i in range(4, 8):
        step(resumed, i, active=True)  # steps 4 and 5 are the window after the switch
    assert written == [(2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
