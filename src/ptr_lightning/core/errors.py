"""Errors that tell the user what was wrong and what to do."""


class ConfigError(ValueError):
    """A configuration key holds a value outside what is allowed."""


class DatasetError(RuntimeError):
    """A data set on disk is missing, incomplete or does not match its official layout."""


class WeightsError(RuntimeError):
    """Pre-trained weights could not be found, read or fitted to the backbone."""


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; training stops before the weights are updated."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model it should continue."""


class RunFolderError(RuntimeError):
    """The run folder holds another run, which this one would overwrite."""


class RunFolderInUseError(RunFolderError):
    """Another live run holds the run folder."""


class Interrupted(Exception):
    """Training was stopped by a signal (SIGTERM from a scheduler, SIGINT from Ctrl+C); the
    message says from where the run can be resumed."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


# What the CLI prints as a few lines (its traceback goes to error.txt): errors whose message
# already says what was wrong and what to do.
USER_ERRORS = (
    ConfigError,
    DatasetError,
    WeightsError,
    NonFiniteLossError,
    CheckpointError,
    RunFolderError,
)
