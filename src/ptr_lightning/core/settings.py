"""One rule per setting, checked by the object that uses the setting, when it is built.

Each configurable object (regularizer, data module, transform, schedule, optimizer settings)
checks its own arguments against :class:`Rule` objects declared beside it. The CLI builds these
objects from the composed config before any data is loaded, so a bad value fails early, and
the Python API fails with the very same message: the message names the Hydra key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ptr_lightning.core.errors import ConfigError


@dataclass
class Rule:
    """What ``key`` may hold: ``test(value)`` must be true; ``allowed`` says so in words.

    ``kind`` is ``"number"`` (int or float, not NaN, not bool), ``"integer"`` or ``"any"``.
    Not frozen on purpose: a rule is one object shared by every place that checks the key.
    """

    key: str
    test: Callable[[Any], bool]
    allowed: str
    kind: str = "number"

    def check(self, value: Any) -> Any:
        """Return ``value``, or raise :class:`ConfigError` naming the key and what is allowed."""
        if self.kind != "any" and not _is_number(value, integer=self.kind == "integer"):
            what = "an integer" if self.kind == "integer" else "a number"
            raise ConfigError(f"{self.key}={value!r} is not {what}: it must be {self.allowed}")
        if not self.test(value):
            raise ConfigError(f"{self.key}={value!r} is not allowed: it must be {self.allowed}")
        return value


def _is_number(value: Any, *, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return not integer or float(value).is_integer()


def positive(key: str, why: str = "") -> Rule:
    """A finite number > 0."""
    return Rule(key, lambda v: 0 < v < math.inf, "a finite number > 0" + why)


def non_negative(key: str, why: str = "") -> Rule:
    """A finite number >= 0."""
    return Rule(key, lambda v: 0 <= v < math.inf, "a finite number >= 0" + why)


def fraction(key: str, *, low_closed: bool = False, why: str = "") -> Rule:
    """A number in (0, 1), or [0, 1) with ``low_closed``."""
    if low_closed:
        return Rule(key, lambda v: 0 <= v < 1, "in [0, 1)" + why)
    return Rule(key, lambda v: 0 < v < 1, "in (0, 1)" + why)


def integer(key: str, minimum: int, maximum: float = math.inf, why: str = "") -> Rule:
    """An integer in ``minimum..maximum``."""
    bound = f">= {minimum}" if maximum == math.inf else f"in {minimum}..{int(maximum)}"
    return Rule(key, lambda v: minimum <= v <= maximum, bound + why, kind="integer")


def one_of(key: str, options: Collection[str], hint: str = "") -> Rule:
    """One of ``options`` (names)."""
    return Rule(key, lambda v: v in options, f"one of {sorted(options, key=str)}{hint}", kind="any")


def numbers(
    key: str, count: int, allowed: str, test: Callable[[float], bool] = lambda x: True
) -> Rule:
    """A list of ``count`` numbers, each passing ``test`` (a scalar or null fails here, naming
    the key, not later where the list is read)."""

    def holds(values: Any) -> bool:
        if isinstance(values, str) or not hasattr(values, "__len__"):
            return False
        return len(values) == count and all(isinstance(x, int | float) and test(x) for x in values)

    return Rule(key, holds, allowed, kind="any")


def check(rules: dict[str, Rule], **values: Any) -> None:
    """Check each ``name=value`` against ``rules[name]``."""
    for name, value in values.items():
        rules[name].check(value)


# The run's own seed, checked first: every other part (the regularizer's targets) derives from it.
SEED_RULE = integer("seed", 0, why=" (it drives every random draw of the run)")
