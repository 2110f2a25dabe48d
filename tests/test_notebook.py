"""The notebook runs, as a user runs it (a Jupyter kernel), on a sweep found by argument."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ptr_lightning.results import plots

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "dashboards.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])  # papermill's parameters cell


def test_notebook_shows_every_figure_of_a_sweep(digits_sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("PTR_RUNS", os.pathsep.join(map(str, (digits_sweep.ptr, digits_sweep.ft))))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()  # raises CellExecutionError, with the cell's traceback, if a cell fails
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    text = "".join(out.get("text", "") for out in outputs)
    assert len(images) == len(plots.FIGURES) == 8, text
    assert "skipped" not in text
    assert "ft" in text and "ptr-sml1" in text and "H " in text
