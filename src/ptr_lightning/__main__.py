"""``python -m ptr_lightning [overrides]`` and the ``ptr-lightning`` console script."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.run.hydra_setup import register_sweepers

register_sweepers()  # before Hydra reads hydra/sweeper=...


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ptr_lightning.run.console import quiet_console
    from ptr_lightning.run.job import run_job  # keep --help and tab completion fast

    quiet_console()
    hydra_cfg = HydraConfig.get()
    return run_job(cfg, list(hydra_cfg.overrides.task), multirun=hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
