"""``hydra/sweeper=grids``: Hydra's basic sweeper over several grids, one after another.

The basic sweeper runs the Cartesian product of every swept key. A study that compares
fine-tuning with a grid of PtR variants would then run fine-tuning once per PtR setting;
here each grid forms its own product and the jobs are the union::

    hydra:
      sweeper:
        params: {seed: 0,1,2}                  # every grid
        grids:
          ft: {method: ft}                     # 3 jobs
          ptr: {method: ptr_sml1, regularizer.R: 3,10,30}   # 9 jobs

A ``params`` or command-line override of a key that some grid sweeps replaces it in those grids
and is not added to the others (``regularizer.R=3`` restricts the PtR grid, leaves ``ft``
alone); any other override applies to every grid. A key a grid holds at one value says what the
grid is (``regularizer.m_mode: features``): an override that does not name that value leaves
the grid out (``regularizer.m_mode=absolute`` runs only the grids of absolute m), one that
names it leaves the grid as it is. No ``grids``: exactly the basic sweeper.
Hydra only loads sweepers from the ``hydra_plugins`` package, hence this module's home.
"""

# No ``from __future__ import annotations``: OmegaConf reads the dataclass's real types, and
# Hydra's plugin scan imports this module without a sys.modules entry that string annotations
# would need.
from dataclasses import dataclass, field

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.ptr_lightning_sweeps.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    grids: dict[str, dict[str, str]] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="grids", node=GridSweeperConf, provider="ptr_lightning"
)


class GridSweeper(BasicSweeper):
    """The union of one basic-sweeper product per grid (see the module docstring)."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        grids: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = {name: dict(grid) for name, grid in (grids or {}).items()}

    def grid_overrides(self) -> list[list[Override]]:
        parser = OverridesParser.create()
        return [
            parser.parse_overrides([f"{key}={value}" for key, value in grid.items()])
            for grid in self.grids.values()
        ] or [[]]

    def split_arguments(  # type: ignore[override]  # the grids make it an instance method
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        grids = self.grid_overrides()
        gridded = {o.key_or_group for grid in grids for o in grid}
        jobs: list[list[str]] = []
        for grid in grids:
            held = {o.key_or_group: values(o)[0] for o in grid if not o.is_sweep_override()}
            if any(
                o.key_or_group in held and held[o.key_or_group] not in values(o) for o in overrides
            ):
                continue  # asked for another value of a key that defines this grid
            own = {o.key_or_group for o in grid}
            shared = [o for o in overrides if o.key_or_group not in (gridded - own) | held.keys()]
            # The basic sweeper keeps the last override of a key: the grid's, then the shared
            # ones (the command line last) replace it.
            (product,) = BasicSweeper.split_arguments([*grid, *shared], None)
            jobs += product
        if not jobs:
            keys = sorted({o.key_or_group for o in overrides} & gridded)
            raise ValueError(f"no grid of the sweep has the values given for {', '.join(keys)}")
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))


def values(override: Override) -> list[str]:
    """The values an override gives its key: each of a sweep's, or its one."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]
