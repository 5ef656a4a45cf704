"""Exceptions whose message is meant for the operator, printed by the CLI without a traceback."""


class UserError(Exception):
    """Something the operator can fix: a missing tool, a port in use, a file that cannot be read."""


class ServiceError(UserError):
    """A local service failed to start or answer; the message says which, where its log is, and what to try."""
