"""``python -m ptr_lightning.results.plots``."""

from ptr_lightning.results.plots import main

raise SystemExit(main())
