"""Errors that tell the user what was wrong and what to do."""


class ConfigError(ValueError):
    """A configuration key holds a value outside what is allowed."""


class DatasetError(RuntimeError):
    """A data set on disk is missing, incomplete or does not match its official layout."""


class WeightsError(RuntimeError):
    """Pre-trained weights could not be found, read or fitted to the backbone."""


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; training stops before the weights are updated."""
