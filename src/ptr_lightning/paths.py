"""Where the Hydra configs are, for the CLI and for tests that compose them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf


def _config_dir() -> Path:
    # An installed wheel carries the configs as the package ptr_lightning.conf; a source checkout
    # (editable install) reads the top-level conf/ itself, so edits there apply at once.
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if (checkout / "config.yaml").is_file():
        return checkout
    return Path(str(files("ptr_lightning") / "conf"))


CONFIG_DIR = _config_dir()


# ${ptr.if_set:value,then,otherwise}: the run folder of a resumed run is the one it resumes
# (conf/config.yaml), so its log and error.txt land there and no stray folder is made.
OmegaConf.register_new_resolver(
    "ptr.if_set", lambda value, then, otherwise: then if value else otherwise, replace=True
)
