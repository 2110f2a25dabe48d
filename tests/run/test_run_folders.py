"""Run folders: unique per launch, every path of a resumed run in its own folder, readable
result files, errors a user can act on, a report that survives `| head`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from ptr_lightning.core import names
from ptr_lightning.core.atomic_files import FILE_MODE
from ptr_lightning.run.train import train
from tests.fixtures.cli import run_cli


def test_default_run_folders_are_unique_per_launch(tmp_path):
    def run_dir() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ptr_lightning", "--cfg", "hydra", "--resolve"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )

    launched = [run_dir(), run_dir()]  # at once, as two jobs of a script would be
    dirs = {yaml.safe_load(p.communicate(timeout=120)[0])["hydra"]["run"]["dir"] for p in launched}
    assert len(dirs) == 2


def test_a_moved_run_resumes_into_its_new_folder_only(make_cfg, tmp_path):
    first = make_cfg("trainer.max_epochs=1", out="first")
    train(first)
    moved = tmp_path / "moved"
    shutil.move(first.paths.output_dir, moved)
    (moved / names.ERROR_FILE).write_text("terminated by SIGTERM\n")  # an earlier attempt's

    run_cli(f"resume={moved}", "trainer.max_epochs=2", cwd=tmp_path)

    assert not Path(first.paths.output_dir).exists()  # nothing written to the old place
    assert not (tmp_path / "outputs").exists()  # no stray folder for the resume
    assert (moved / names.CSV_DIR / "metrics.before-resume-1.csv").is_file()
    epochs = {row.split(",")[0] for row in (moved / names.CSV_METRICS).read_text().splitlines()}
    assert "1" in epochs  # the second epoch's rows, in the moved folder
    assert json.loads((moved / names.METRICS_FILE).read_text())["epochs"] == 2
    assert not (moved / names.ERROR_FILE).exists()  # the stale note went with the finished run
    (record,) = (moved / ".hydra").glob("resume-*")  # Hydra's record of the resume, kept apart
    assert f"resume={moved}" in (record / "overrides.yaml").read_text()
    for result in (names.METRICS_FILE, names.CONFIG_FILE, str(names.LAST_CHECKPOINT)):
        assert stat.S_IMODE((moved / result).stat().st_mode) == FILE_MODE, result


def test_a_known_error_prints_a_few_lines_and_keeps_the_traceback(tmp_path):
    result = run_cli(
        "dataset=cub200",
        "model.weights=null",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        succeed=False,
    )
    assert result.returncode == 1
    assert "DatasetError: CUB-200-2011: data folder not found." in result.stderr
    assert "dataset.root=/path/to/cub200" in result.stderr and "paths.data_dir=" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) < 20
    assert "Traceback" in (tmp_path / "run" / names.ERROR_FILE).read_text()


def test_report_into_a_closed_pipe_is_quiet(tmp_path):
    from tests.fixtures.run_folders import acc, make_sweep

    sweep = make_sweep(tmp_path / "sweep", [(acc(0.8), {"seed": s}) for s in range(3)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    report = subprocess.Popen(
        [sys.executable, "-m", "ptr_lightning.results.report", str(sweep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    report.stdout.close()  # the reader is gone before the first line, as `| head -0` leaves
    stderr = report.stderr.read()
    assert report.wait(timeout=60) == 1
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert (sweep / names.REPORT_MD).is_file()  # written before anything was printed
