"""``resume=<run folder>``: continue that run from its last checkpoint, in its own folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ptr_lightning.errors import ConfigError
from ptr_lightning.paths import CONFIG_DIR

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def resume_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The resumed run's saved config, with this command's ``key=value`` overrides
    (e.g. ``trainer.max_epochs=60`` to extend it), pointed at its folder and last checkpoint."""
    run = Path(str(cfg.resume)).expanduser()
    checkpoint = run / LAST_CHECKPOINT
    for needed in (run / "config.yaml", checkpoint):
        if not needed.is_file():
            raise ConfigError(
                f"resume={run}: {needed} does not exist. Give the folder of an earlier run "
                f"(it holds config.yaml and {LAST_CHECKPOINT}), or ckpt_path=<file>."
            )
    changes = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
    group_changes = [o for o in changes if (CONFIG_DIR / o.split("=", 1)[0].lstrip("+~")).is_dir()]
    if group_changes:
        raise ConfigError(
            f"a resumed run keeps the config it was started with; {group_changes} would change "
            "it. Only key=value overrides (e.g. trainer.max_epochs=60) apply on resume."
        )
    saved = OmegaConf.load(run / "config.yaml")
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist([o.lstrip("+") for o in changes]))
    with open_dict(merged):
        merged.paths.output_dir = str(run.resolve())
        merged.resume = None
        merged.ckpt_path = str(checkpoint.resolve())
    return merged


def keep_earlier_metrics(run: Path) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv: set it aside before resuming."""
    csv = run / "csv" / "metrics.csv"
    if csv.is_file():
        n = 1 + len(list(csv.parent.glob("metrics.before-resume-*.csv")))
        csv.rename(csv.with_name(f"metrics.before-resume-{n}.csv"))
