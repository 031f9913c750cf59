"""One error hierarchy for the whole toolkit.

Everything nastk raises on bad input derives from :class:`NastkError`, so the CLI can turn any of them
into one clear line on stderr (exit status 2) and API users can catch them in one place.
"""


class NastkError(Exception):
    """Base class of every error nastk raises on purpose."""


class ArchitectureError(NastkError, ValueError):
    """An architecture string or value is malformed for its space."""


class UnknownOpError(ArchitectureError):
    """An architecture names an operation that its space does not have."""


class UnknownNameError(NastkError, KeyError):
    """A space, strategy, dataset, evaluator or proxy name is not registered."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(UnknownNameError):
    """A plug-in name resolves to something unusable: a module that fails to import (its own error, one
    line) or an object of the wrong kind (a function where a Strategy subclass belongs)."""


class DataError(NastkError):
    """A data file is missing, unreadable or fails its integrity check."""


class MissingDataError(DataError, FileNotFoundError):
    """A required data file does not exist."""


class CorruptDataError(DataError):
    """A data file exists but its checksum, shape or content is wrong."""


class CapabilityError(NastkError):
    """A strategy or evaluator needs a capability that the search space does not declare."""


class ConfigError(NastkError, ValueError):
    """A configuration value or combination of options is invalid."""


class RunError(NastkError):
    """A run folder is inconsistent with the requested run (e.g. resuming with another config)."""


class WriteError(NastkError):
    """A file or folder could not be written: read-only file system, no space left, a path component
    that is a file, a target that is a folder, permission denied. Raised by the one writer
    (:mod:`nastk.paths`) with the path and the cause; nothing half-written is left behind."""

    def __init__(self, message: str, path=None, errno=None):
        super().__init__(message)
        self.path, self.errno = path, errno


class EvaluationError(NastkError):
    """An evaluator produced something that is not a result (e.g. a metric that is not a number)."""
