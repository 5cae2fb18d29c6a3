"""Errors a user can cause and fix; the CLI prints them as one line, without a stack trace."""


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


class NoClustersError(VireidError):
    """Clustering found no cluster in a modality, so a stage has nothing to train on."""
