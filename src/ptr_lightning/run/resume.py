"""``resume=<run folder>``: continue that run from its last checkpoint, in its own folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ptr_lightning.core import names
from ptr_lightning.core.config_dir import CONFIG_DIR
from ptr_lightning.core.config_keys import changes_what_is_trained, flatten
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.names import AUTO_RESUME
from ptr_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ptr_lightning.tracking.run_identity import fill_run_identity


def run_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The config this run goes with: a resumed run's saved one (``resume=<folder>``, with the
    command line's ``overrides``), or ``cfg`` pointed at its own folder's checkpoint
    (``resume=auto``), or ``cfg`` itself; with the run's identity filled in."""
    if cfg.get("resume") == AUTO_RESUME:
        cfg = auto_resume(cfg)
    elif cfg.get("resume"):
        cfg = resume_config(cfg, overrides)
    fill_run_identity(cfg)
    return cfg


def resume_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The resumed run's saved config with this command's overrides applied (e.g.
    ``trainer.max_epochs=60`` to extend it), pointed at its folder and last checkpoint.

    ``overrides`` are the command line's, parsed by Hydra's own parser and applied as Hydra
    applies them: ``key=value`` (the key must exist), ``+key=value`` (adds a key),
    ``++key=value`` (adds or replaces), ``~key`` (deletes). Config-group choices
    (``dataset=cub200``) are refused: they would make it another run.
    """
    run = Path(str(cfg.resume)).expanduser()
    checkpoint = run / names.LAST_CHECKPOINT
    for needed in (run / names.CONFIG_FILE, checkpoint):
        if not needed.is_file():
            raise ConfigError(
                f"resume={run}: {needed} does not exist. Give the folder of an earlier run "
                f"(it holds {names.CONFIG_FILE} and {names.LAST_CHECKPOINT}), or "
                "ckpt_path=<file>."
            )
    changes = [o for o in OverridesParser.create().parse_overrides(list(overrides)) if applies(o)]
    groups = [o.input_line for o in changes if is_group(o)]
    if groups:
        raise ConfigError(
            f"a resumed run keeps the config it was started with; {groups} would change it. "
            "Only key=value, +key=value, ++key=value and ~key overrides (e.g. "
            "trainer.max_epochs=60) apply on resume."
        )
    changing = [o.input_line for o in changes if changes_what_is_trained(o.key_or_group)]
    if changing:
        raise ConfigError(
            f"resume: {changing} would change what the run trains on (its data, split, classes "
            "or model) while its checkpoint, split.json and metrics belong to the old one. Start "
            "a new run for that; a resume accepts other keys (trainer.max_epochs=60, logging, "
            "dataset.root for moved data, dataset.num_workers, ...)."
        )
    saved = upgraded(OmegaConf.load(run / names.CONFIG_FILE))
    # The config holds absolute paths into the folder the run had then (the CSV logger's
    # save_dir, ...): a moved or copied run must write into its own folder, not the old one.
    saved = relocated(saved, old=str(saved.paths.output_dir), new=str(run.resolve()))
    OmegaConf.set_struct(saved, True)  # as in Hydra: key=value must name an existing key
    for override in changes:
        apply_override(saved, override)
    with open_dict(saved):
        saved.resume = None
        saved.overwrite = False  # a resumed run continues its folder; it never replaces it
        saved.ckpt_path = str(checkpoint.resolve())
    return saved


def upgraded(saved: DictConfig) -> DictConfig:
    """A run's saved config with the keys it was written without, as that run had them: before
    the optimizer was a config group (SGD) and before models had a library and an input (a
    torchvision model taking the data's crop, or digits' images whole, with ImageNet's
    statistics, which the data modules also default to)."""
    with open_dict(saved):
        if "_target_" not in saved.optimizer:
            momentum = saved.optimizer.get("momentum", 0.9)
            saved.optimizer = {
                "_target_": "torch.optim.SGD",
                "_partial_": True,
                "momentum": momentum,
            }
        saved.model.setdefault("library", "torchvision")
        if "input" not in saved.model:
            size = saved.dataset.get("crop", saved.dataset.get("image_size"))
            saved.model.input = {
                "size": size,
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            }
    return saved


def relocated(cfg: DictConfig, *, old: str, new: str) -> DictConfig:
    """``cfg`` with every path at or below the folder ``old`` moved to the same place below
    ``new``."""

    def move(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: move(value) for key, value in node.items()}
        if isinstance(node, list):
            return [move(value) for value in node]
        if isinstance(node, str) and (node == old or node.startswith(old.rstrip("/") + "/")):
            return new + node[len(old) :]
        return node

    return OmegaConf.create(move(OmegaConf.to_container(cfg, resolve=False)))


def auto_resume(cfg: DictConfig) -> DictConfig:
    """``resume=auto``: continue from this run folder's own ``checkpoints/last.ckpt`` if it
    holds one, else start fresh: what a cluster job that is requeued into the same folder needs.

    The folder's run must have trained on what this one trains on (same data, split, classes and
    model), else it is refused, naming the keys that differ.
    """
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.resume = None
    out = Path(cfg.paths.output_dir)
    checkpoint = out / names.LAST_CHECKPOINT
    if not checkpoint.is_file():
        return cfg
    saved = flatten(OmegaConf.load(out / names.CONFIG_FILE))
    now = flatten(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    differing = sorted(
        key
        for key in saved.keys() | now.keys()
        if changes_what_is_trained(key) and saved.get(key) != now.get(key)
    )
    if differing:
        raise ConfigError(
            f"resume=auto: {out} holds a run that trained on something else (it differs in "
            f"{', '.join(differing)}); give this run another folder, or resume=<that folder>."
        )
    with open_dict(cfg):
        cfg.overwrite = False  # a resumed run continues its folder; it never replaces it
        cfg.ckpt_path = str(checkpoint.resolve())
    return cfg


def applies(override: Override) -> bool:
    """Whether an override changes the run's config (``resume=`` and Hydra's own do not)."""
    key = override.key_or_group
    return key != "resume" and key != "hydra" and not key.startswith("hydra.")


def is_group(override: Override) -> bool:
    return override.package is not None or (CONFIG_DIR / override.key_or_group).is_dir()


def apply_override(cfg: DictConfig, override: Override) -> None:
    """Apply one parsed override to ``cfg`` in place, as Hydra applies it when composing."""
    key, line = override.key_or_group, override.input_line
    if override.is_sweep_override():
        raise ConfigError(f"resume: {line} is a sweep; a resumed run takes single values")
    value = override.value()
    exists = OmegaConf.select(cfg, key, default=None, throw_on_missing=False) is not None
    try:
        if override.is_delete():
            if not exists:
                raise ConfigError(
                    f"resume: cannot delete {key!r}: the run's config has no such key"
                )
            parent, _, leaf = key.rpartition(".")
            with open_dict(cfg):
                del (OmegaConf.select(cfg, parent) if parent else cfg)[leaf]
        elif override.is_add() and exists:
            raise ConfigError(
                f"resume: {line}: {key!r} already exists; use {line[1:]} to change it, or "
                f"+{line} to add or change it"
            )
        elif override.is_add() or override.is_force_add():
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        else:
            OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as err:
        raise ConfigError(
            f"resume: {line}: {key!r} is not a key of the run's config; +{line} adds it"
        ) from err


def keep_earlier_metrics(run: Path) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv: set it aside before resuming."""
    csv = run / names.CSV_METRICS
    if csv.is_file():
        n = 1 + len(list(csv.parent.glob(names.CSV_BEFORE_RESUME)))
        csv.rename(csv.with_name(f"metrics.before-resume-{n}.csv"))


def earlier_metrics(run: Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run that finished before this resume of it (else empty): a
    resumed run keeps every key it had (its validation metrics when no epoch is left to train)."""
    path = run / names.METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}
