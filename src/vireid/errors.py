"""Errors a user can cause and fix; the CLI prints them as one line, without a stack trace.

`vireid` exits with 2 for a `VireidError` (bad input or setting) and with 3 for a `RunStoppedError`
(the inputs were fine but the run found nothing to train on, e.g. no clusters).
"""


class VireidError(Exception):
    """Base class for mistakes in inputs (paths, settings, files) rather than bugs."""


class DatasetLayoutError(VireidError):
    """A dataset root does not have the expected layout."""


class ConfigError(VireidError):
    """An unknown or invalid configuration key or value."""


class ImageReadError(VireidError):
    """An image file is missing, unreadable or truncated."""


class CheckpointError(VireidError):
    """A checkpoint file is missing or does not hold what vireid wrote."""


class FeatureFileError(VireidError):
    """A saved feature file misses an array or has arrays of the wrong shape."""


class OutputError(VireidError):
    """An output file or folder cannot be written (a file in the way, a read-only place)."""


class NonFiniteError(VireidError):
    """A model or a feature file gives NaN or infinite numbers where features are expected."""


class RunStoppedError(VireidError):
    """The run could not train: a stage found nothing to learn from (command-line exit status 3)."""


class NoClustersError(RunStoppedError):
    """Clustering found no cluster in a modality, so a stage has nothing to train on."""
