"""Errors that reach the user as one line, never as a traceback."""


class InitbenchError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class ParamsError(InitbenchError, ValueError):
    """A value in params.yaml is missing, unknown, of the wrong type or out of range."""


class DataError(InitbenchError):
    """The image folder cannot be turned into a dataset (no images, too few classes, ...)."""


class CheckpointError(InitbenchError):
    """An init checkpoint is missing, unreadable or does not fit the model."""
