"""The notebook's code runs on a real run folder (headless matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from ptr_lightning.train import train

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "ptr_telemetry.ipynb"


def test_notebook_cells_run_on_two_runs(make_cfg, monkeypatch):
    matplotlib.use("Agg")
    ft = make_cfg("regularizer=none", "trainer.max_epochs=1", out="ft")
    ptr = make_cfg("regularizer.T=100", "trainer.max_epochs=2", out="ptr")
    train(ft)
    train(ptr)
    monkeypatch.setenv("PTR_BASELINE", ft.paths.output_dir)
    monkeypatch.setenv("PTR_RUN", ptr.paths.output_dir)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    metrics = namespace["metrics"]
    assert {"ptr/w", "ptr/g_ce", "ptr/g_ptr", "val/acc"} <= set(metrics)
    assert all(w > 0 for _, w in metrics["ptr/w"])
