"""User-facing errors.

A `NasrecError` is a problem with what the user asked for (bad file, unknown name, impossible
budget). The CLI prints its message on one line and exits with code 2, without a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class NasrecError(Exception):
    """Bad input or an impossible request; the message says what and where."""


class DataError(NasrecError):
    """A data file is missing, empty or malformed (the message names file:line)."""


class ConfigError(NasrecError):
    """A search space, architecture, strategy or option is invalid."""
