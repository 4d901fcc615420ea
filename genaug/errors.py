"""Errors meant for people.

Library code raises :class:`GenaugError` for a user's mistake (bad path, bad value,
unreadable file). The CLI turns it into one line on stderr and a non-zero exit;
``assert`` is kept for internal invariants only.
"""


class GenaugError(Exception):
    """A user-facing error: the message is shown as one line, without a traceback."""


class ConfigError(GenaugError):
    """An unknown config key, a wrong type or a value out of range."""


class DataError(GenaugError):
    """Missing, empty, unreadable or inconsistent input data."""

