"""The command line's console: each line once, without known noise. Used by the CLI only."""

from __future__ import annotations

import logging
import warnings

# Log lines that say nothing about the run: Lightning's advertisement for its LitLogger.
NOISE_LINES = ("💡 Tip: For seamless cloud logging",)
# Warnings of the installed libraries about their own internals (Lightning's use of a deprecated
# torch pytree API), or about a choice made here on purpose (data are decoded in memory, so
# loader workers would only add cost).
NOISE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*does not have many workers.*",
)


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE_LINES)


def quiet_console() -> None:
    """Call once Hydra has set up logging (in the job): Lightning's own stderr handler goes, so
    its lines are printed once, by Hydra's handlers (console and ``<run>/ptr_lightning.log``),
    and the known noise is dropped."""
    lightning = logging.getLogger("lightning")
    for handler in list(lightning.handlers):
        lightning.removeHandler(handler)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DropNoise) for f in handler.filters):
            handler.addFilter(DropNoise())
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
