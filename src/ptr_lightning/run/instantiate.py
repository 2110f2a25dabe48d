"""Config nodes as objects: Hydra's ``instantiate``, with errors that name the Hydra key."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object
from hydra.utils import instantiate as hydra_instantiate

from ptr_lightning.core.errors import ConfigError


def instantiate(node: Any, key: str) -> Any:
    """Hydra's ``instantiate`` of config node ``key``, except that a bad setting surfaces as the
    object's own :class:`ConfigError` (naming the key) rather than wrapped in Hydra's error, and
    a key the object does not take (``+regularizer.Rr=3``) as a :class:`ConfigError` listing the
    keys it does take."""
    try:
        return hydra_instantiate(node)
    except InstantiationException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        unknown = unknown_settings(node, key)
        if unknown is None:
            raise
        raise ConfigError(unknown) from None


def unknown_settings(node: Any, key: str) -> str | None:
    """What is wrong when ``node`` holds keys its ``_target_`` does not take, else None."""
    try:
        target = get_object(str(node["_target_"]))
        parameters = inspect.signature(target).parameters
    except Exception:  # no target, or one Python cannot describe: Hydra's own error says more
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    takes = [name for name in parameters if name != "self"]
    extra = sorted(str(k) for k in node if not str(k).startswith("_") and k not in takes)
    if not extra:
        return None
    owner = getattr(target, "__name__", str(target))
    return (
        f"{', '.join(f'{key}.{name}' for name in extra)}: not a setting of {owner}; its "
        f"settings are {', '.join(f'{key}.{name}' for name in takes)}"
    )
