"""The pseudo-task's switch rules (``regularizer.switch``) by name, and why a run under each
never switched on: read by the switch callbacks, the run's summary, sweeps and the report."""

from __future__ import annotations

from ptr_lightning.core.settings import one_of

DEFAULT_SWITCH = "latch"
# rule -> the cause when a run under it never switched the pseudo-task on
NEVER_ON_BECAUSE = {
    "latch": "the epoch-mean training CE stayed >= regularizer.T",
    "epoch": "the epoch-mean training CE stayed >= regularizer.T",
    "lr_drop": "the learning rate never dropped",
}

SWITCH_RULE = one_of("regularizer.switch", NEVER_ON_BECAUSE, " (when the pseudo-task is on)")


def never_switched_on(rule: str | None, where: str = "") -> str:
    """``the pseudo-task never switched on<where> (latch: the epoch-mean training CE stayed >=
    regularizer.T)``: the cause of the rule in use only."""
    rule = rule or DEFAULT_SWITCH
    cause = NEVER_ON_BECAUSE.get(rule, "unknown switch rule")
    return f"the pseudo-task never switched on{where} ({rule}: {cause})"
