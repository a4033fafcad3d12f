"""Errors a person can act on: each carries a one-line message the CLIs print without a traceback."""


class L2meshError(Exception):
    """Base of every error the CLIs report as one line and a non-zero exit."""


class InvalidId(L2meshError, ValueError):
    """A node id, network id or MAC given by a user or a file is malformed."""


class IdentityError(L2meshError):
    """An identity file is missing, unreadable or corrupted."""


class StateError(L2meshError):
    """A state directory or a file in it cannot be used."""
