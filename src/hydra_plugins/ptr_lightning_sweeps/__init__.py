"""ptr-lightning's Hydra sweeper ``hydra/sweeper=grids``: a union of grids, not one product."""
