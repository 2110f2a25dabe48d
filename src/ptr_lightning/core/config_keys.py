"""What each config key is to a run: one list, read by every place that asks.

- **plumbing** (:data:`PLUMBING`): where and how a run goes (paths, loggers, workers, devices,
  telemetry, compilation), never what it computes beyond floating-point noise. Left out of a
  run's name, and runs that differ only in plumbing are compared;
- **seeds** (:data:`SEEDS`): the one setting in which the runs of a group differ;
- **what is trained** (:data:`DATA_AND_MODEL`): the data, its split and classes, and the model;
  a resumed run may not change them (its checkpoint, split and metrics belong to them);
- **the method** (:data:`METHOD`): the regularizer and its keys; a group's fine-tuning baseline
  equals it in every compared key outside these.

Every other key (epochs, schedule, learning rate, weight decay, augmentation, ...) is a setting
of the experiment: runs are compared only where all of them are equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig


# PtR's two hyperparameters, the paper's sweep axes.
PTR_R, PTR_M = "regularizer.R", "regularizer.m"
PTR_AXES = (PTR_R, PTR_M)
PTR_TARGETS = "regularizer.targets"

PLUMBING = (
    "hydra",
    "paths",
    "logger",
    "run",
    "choices",  # the group options; their content is compared key by key
    "resume",
    "ckpt_path",
    "overwrite",
    "gpu_pool",
    "optimized_metric",
    "telemetry",  # measuring never changes training (tests/model/test_telemetry.py)
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.decode_workers",
    "dataset.cache_dir",
    "dataset.eval_batch_size",
    "regularizer.source.decode_workers",  # JointTrain's source images: as dataset.*
    "regularizer.source.cache_dir",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.num_sanity_val_steps",
    "trainer.deterministic",
    "model.compile",
    "model.channels_last",
)
SEEDS = ("seed", "regularizer.seed")
DATA_AND_MODEL = (
    "dataset",
    "model.library",
    "model.arch",
    "model.name",
    "model.head",
    "model.weights",
    "model.imagenet_weights",
    "model.kwargs",
    "model.input",
)
METHOD = ("regularizer", "regression", "model.ptr")


def under(key: str, prefixes: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies below one."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def is_plumbing(key: str) -> bool:
    return under(key, PLUMBING)


def is_compared(key: str) -> bool:
    """Whether runs must agree on ``key`` to be compared (neither plumbing nor a seed)."""
    return not under(key, PLUMBING) and not under(key, SEEDS)


def changes_what_is_trained(key: str) -> bool:
    return under(key, DATA_AND_MODEL) and not under(key, PLUMBING)


def is_method(key: str) -> bool:
    return under(key, METHOD)


def comparable_value(value: Any) -> Any:
    """A hashable value that compares 3 and 3.0 equal (Optuna writes floats, configs ints)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def flatten(config: DictConfig) -> dict[str, Any]:
    """``{"model.lr": 0.05, ...}``: every leaf of ``config`` as written in the file (unresolved,
    so a saved ``.hydra/config.yaml`` with its ``${hydra:...}`` reads too)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, list | dict):
            out[prefix[:-1]] = str(node)
        else:
            out[prefix[:-1]] = comparable_value(node)

    from omegaconf import OmegaConf  # here: ptr.py reads this module's keys without OmegaConf

    walk(OmegaConf.to_container(config, resolve=False), "")
    return out


def short_keys(keys: Sequence[str]) -> list[str]:
    """Each key by its last part (``R``), in full where two end alike (``model.lr``,
    ``scheduler.lr``): how run names and labels show keys."""
    shorts = [key.rsplit(".", 1)[-1] for key in keys]
    return [
        short if shorts.count(short) == 1 else key for key, short in zip(keys, shorts, strict=True)
    ]
