"""The errors sht reports to a user in one line (the CLI prints ``sht <command>: error: <message>``).

They live here, importing nothing, so that the CLI can catch them without loading torch or the training code;
each is also reachable where it is raised (``sht.config.ConfigError``, ``sht.data.formats.DataError``,
``sht.checkpoint.CheckpointError``)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema, or a run that cannot start as configured."""


class DataError(ValueError):
    """A data file or folder that cannot be used; the message names the file and the problem."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, from a newer format or for a different model."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is kept."""


USER_ERRORS = (ConfigError, DataError, CheckpointError)
