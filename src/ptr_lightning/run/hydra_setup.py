"""What Hydra needs before it composes this project's configs: the ``ptr.*`` resolvers the
configs use and the ``grids`` sweeper. Imported by the entry point and by tests that compose."""

from __future__ import annotations

from omegaconf import OmegaConf

from ptr_lightning.core import names
from ptr_lightning.core.names import AUTO_RESUME


def register_sweepers() -> None:
    """Make ``hydra/sweeper=grids`` known to Hydra however this project is installed.

    Hydra finds sweepers by listing the ``hydra_plugins`` namespace; an editable install
    (``pip install -e .``, needed here for the ``conf/`` mapping) serves that namespace through
    setuptools' import hook, which cannot be listed, so the scan misses the sweeper. Hydra's
    ``Plugins.register`` is its documented way to add one by hand (a no-op if the scan found it).
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # first: the scan re-executes the plugin modules it finds
    from hydra_plugins.ptr_lightning_sweeps.grid_sweeper import GridSweeper

    plugins.register(GridSweeper)


def _resumed_folder(resume: str | None, default: str) -> str:
    # resume=<folder> works in that folder (its log and error.txt land there, no stray one is
    # made); resume=auto, and a new run, in the folder Hydra gives it.
    return resume if resume and resume != AUTO_RESUME else default


def _hydra_subdir(resume: str | None, stamp: str) -> str:
    # Hydra's record of a resume goes beside the run's original .hydra/, not over it.
    resumed = resume and resume != AUTO_RESUME
    return f"{names.HYDRA_DIR}/resume-{stamp}" if resumed else names.HYDRA_DIR


def _default_m(m_mode: str, backbone_m: float) -> float:
    from ptr_lightning.ptr import M_DEFAULTS  # torch: only when a config asks

    # An unknown mode keeps the backbone's m: regularizer.m_mode's own rule then names the key.
    return M_DEFAULTS.get(m_mode, M_DEFAULTS["absolute"])(backbone_m)


def _gpu_count() -> int:
    import torch  # only when a config asks (cluster=local_gpus)

    return max(torch.cuda.device_count(), 1)


def _as_config(value):
    # A list as a ListConfig: OmegaConf.resolve cannot put a plain list in a node.
    return OmegaConf.create(value) if isinstance(value, list) else value


def _torchvision_input(arch: str, weights: str, key: str):
    from ptr_lightning.model.torchvision_models import input_spec  # only when a config asks

    return _as_config(input_spec(arch, weights, key))


def _timm_input(name: str, key: str):
    from ptr_lightning.model.timm_models import input_spec  # only when a config asks

    return _as_config(input_spec(name, key))


OmegaConf.register_new_resolver("ptr.run_dir", _resumed_folder, replace=True)
OmegaConf.register_new_resolver("ptr.hydra_subdir", _hydra_subdir, replace=True)
OmegaConf.register_new_resolver("ptr.gpu_count", _gpu_count, replace=True)
OmegaConf.register_new_resolver("ptr.default_m", _default_m, replace=True)
# model.input: the images the weights expect (size, mean, std), from the library's metadata.
OmegaConf.register_new_resolver("ptr.torchvision_input", _torchvision_input, replace=True)
OmegaConf.register_new_resolver("ptr.timm_input", _timm_input, replace=True)
