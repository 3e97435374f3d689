"""The bad-input errors that commands report as one ``error: ...`` line and exit status 2.

Kept free of heavy imports so that command lines can name them without loading torch.
"""


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the key and what is allowed."""


class MNISTDataError(RuntimeError):
    """The MNIST files are missing, truncated or inconsistent; the message says how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or holds a model other than the one asked for."""
