"""Where the Hydra configs are, for the command line and for tests that compose them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _config_dir() -> Path:
    # An installed wheel carries the configs as the package ptr_lightning.conf; a source checkout
    # (editable install) reads the top-level conf/ itself, so edits there apply at once.
    checkout = Path(__file__).resolve().parents[3] / "conf"
    if (checkout / "config.yaml").is_file():
        return checkout
    return Path(str(files("ptr_lightning") / "conf"))


CONFIG_DIR = _config_dir()
