"""A run's logged metrics as series: a resumed run's CSV parts read as one curve."""

from __future__ import annotations

from ptr_lightning.core import names
from ptr_lightning.results.curves import read_series


def test_a_resumed_runs_curve_is_whole(tmp_path):
    csv = tmp_path / names.CSV_DIR
    csv.mkdir()
    # The first process logged epochs 0-1 (steps 0-5) and part of epoch 2, then was killed; the
    # resumed one repeats epoch 2 from step 6 and goes on.
    (csv / "metrics.before-resume-1.csv").write_text(
        "epoch,step,train/ce,val/acc\n0,2,2.0,\n0,2,,0.3\n1,5,1.5,\n1,5,,0.5\n2,6,1.4,\n"
    )
    (csv / "metrics.csv").write_text("epoch,step,train/ce,val/acc\n2,6,1.2,\n2,8,,0.7\n3,11,1.0,\n")
    series = read_series(tmp_path)
    assert series["val/acc"].epoch.tolist() == [0, 1, 2]
    assert series["val/acc"].value.tolist() == [0.3, 0.5, 0.7]
    assert series["train/ce"].step.tolist() == [2, 5, 6, 11]
    assert series["train/ce"].value.tolist() == [2.0, 1.5, 1.2, 1.0]  # step 6 as logged again


def test_a_row_being_written_by_a_live_run_is_left_out(tmp_path):
    csv = tmp_path / names.CSV_DIR
    csv.mkdir()
    (csv / "metrics.csv").write_text("epoch,step,train/ce,val/acc\n0,2,2.0,\n0,3,1.9,0.\n1,")
    series = read_series(tmp_path)
    assert series["train/ce"].step.tolist() == [2, 3]
    assert series["val/acc"].value.tolist() == [0.0]
