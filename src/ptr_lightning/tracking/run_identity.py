"""Who a run is, for W&B and the plots: name, group, job type and tags, from its config.

Filled into the config's ``run`` node when a run starts (keys left null there), so
``config.yaml`` records them and ``resume=`` keeps them:

- name: the job's command-line overrides, keys shortened to their last part
  (``regularizer.R=3`` -> ``R=3``); in a Hydra multirun only the swept ones
  (``R=3,m=1,seed=0``); the method when there are none;
- group: the sweep folder (one group per multirun), or a single run's own folder, relative to
  where it ran (or its name, when it lies elsewhere);
- job type: the method (``ft``, ``ptr-sml1``, ``fnp-sml1``, ``l2sp``, ...);
- tags: data set, backbone, regularizer, R, m (where the regularizer has them), seed, then the
  config's own ``run.tags``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from ptr_lightning.core import names
from ptr_lightning.core.config_keys import is_plumbing, short_keys

MAX_GROUP = 128  # W&B's limit on a group name
MAX_TAG = 64  # W&B's limit on a tag


def fill_run_identity(cfg: DictConfig) -> None:
    """Fill the null keys of ``cfg.run`` (in place); a config without ``run`` is left as is."""
    run = cfg.get("run")
    if run is None:
        return
    with open_dict(cfg):
        if run.get("job_type") is None:
            run.job_type = method(cfg)
        if run.get("name") is None:
            run.name = run_name(cfg) or run.job_type
        if run.get("group") is None:
            run.group = run_group(cfg)
        run.tags = unique([*derived_tags(cfg), *(run.get("tags") or [])])


def method(cfg: DictConfig) -> str:
    choices = cfg.get("choices") or {}
    return names.method_name(str(choices.get("regularizer")), choices.get("regression"))


def run_name(cfg: DictConfig) -> str:
    """``R=3,m=1,seed=0``: the job's overrides (the swept ones in a multirun)."""
    # The last override of a key is the one that counts.
    latest = {o.key_or_group: o for o in parse(cfg.run.get("overrides") or [])}
    overrides = [o for o in latest.values() if not is_plumbing(o.key_or_group)]
    swept = swept_keys(cfg)
    if swept:
        overrides = [o for o in overrides if o.key_or_group in swept]
    shown = short_keys([o.key_or_group for o in overrides])
    return ",".join(
        f"{key}={o.get_value_element_as_str()}" for o, key in zip(overrides, shown, strict=True)
    )


def in_multirun(cfg: DictConfig) -> bool:
    return cfg.run.get("job_num") is not None


def swept_keys(cfg: DictConfig) -> set[str]:
    """The keys a Hydra multirun sweeps, from the sweep's ``multirun.yaml`` (written by Hydra's
    basic sweeper; other sweepers, e.g. Optuna, have none: then every override names the run)."""
    if not in_multirun(cfg):
        return set()
    path = Path(str(cfg.run.sweep_dir)) / names.HYDRA_MULTIRUN_FILE
    if not path.is_file():
        return set()
    sweep = OmegaConf.load(path)
    task = OmegaConf.select(sweep, "hydra.overrides.task", default=None) or []
    keys = {o.key_or_group for o in parse(task) if o.is_sweep_override()}
    params = OmegaConf.select(sweep, "hydra.sweeper.params", default=None) or {}
    return keys | {str(key) for key in params}


def parse(overrides: Iterable[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides([str(o) for o in overrides])


def run_group(cfg: DictConfig) -> str:
    folder = cfg.run.sweep_dir if in_multirun(cfg) else cfg.paths.output_dir
    return short_path(str(folder))[-MAX_GROUP:]


def short_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else its folder name:
    never an absolute path (it would carry a home folder into a shared W&B project)."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return absolute.name


def derived_tags(cfg: DictConfig) -> list[str]:
    regularizer = cfg.get("regularizer") or {}
    tags = [
        str(OmegaConf.select(cfg, "dataset.name", default="")),
        str(OmegaConf.select(cfg, "model.arch", default="")),
        str(OmegaConf.select(cfg, "choices.regularizer", default="")),
    ]
    tags += [f"{key}={regularizer[key]}" for key in ("R", "m") if key in regularizer]
    return [*tags, f"seed={cfg.get('seed')}"]


def unique(tags: Sequence[str]) -> list[str]:
    kept = [str(tag)[:MAX_TAG] for tag in tags if tag not in ("", "None")]
    return list(dict.fromkeys(kept))
