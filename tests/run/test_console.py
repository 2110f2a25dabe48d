"""What the command line prints: each line once, no known noise, the run's summary."""

from __future__ import annotations

from PIL import Image

from ptr_lightning.data.images import decode_all
from tests.fixtures.cli import run_cli


def test_a_job_prints_each_line_once_without_noise(digits_sweep):
    result = digits_sweep.ft_console
    text = result.stdout + result.stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert not {line for line in lines if lines.count(line) > 1}
    assert sum("GPU available" in line for line in lines) == 1
    assert "litlogger" not in text and "LeafSpec" not in text and "anonymous" not in text
    assert any(line.startswith("test/acc ") for line in lines)
    assert any(line.startswith("run folder: ") for line in lines)
    # Hydra's job name: the log file, which has the Lightning lines too (once).
    log = (digits_sweep.ft / "ptr_lightning.log").read_text()
    assert log.count("GPU available") == 1


def test_help_names_the_program(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert "ptr_lightning is powered by Hydra" in result.stdout


def test_decoding_shows_no_progress_bar_when_not_on_a_terminal(tmp_path, capsys):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (12, 9), (i, 0, 0)).save(paths[-1])
    images, skipped = decode_all(paths, size=8)
    assert images.shape == (3, 3, 8, 8) and not skipped
    captured = capsys.readouterr()
    assert "decoding images" not in captured.out + captured.err
