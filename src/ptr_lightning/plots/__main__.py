"""``python -m ptr_lightning.plots``."""

from ptr_lightning.plots import main

raise SystemExit(main())
