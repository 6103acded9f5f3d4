"""Exceptions raised by scree.

Every error scree raises derives from :class:`Error`. Errors that come from the
native client carry the library's negative ``SCREE_E*`` code in ``code``;
errors raised by pure-Python validation have ``code = None``. Subclasses also
derive from the closest built-in exception, so ``except ValueError`` keeps
working for callers who do not know about scree.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "InvalidArgument",
    "NotFound",
    "Exists",
    "NoSpace",
    "PermissionDenied",
    "Disconnected",
    "CudaError",
    "NotSupported",
]


class Error(Exception):
    """Base class of scree errors.

    Attributes:
        code: the negative ``SCREE_E*`` code from the C library, or ``None``
            when the error was raised by Python code.
        message: a human-readable explanation.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        # KeyError (a base of NotFound) would otherwise print the repr of the
        # message, quotes included.
        return self.message

    def __reduce__(self):  # keep errors picklable across processes
        return (type(self), (self.message, self.code))


class InvalidArgument(Error, ValueError):
    """An argument is malformed: bad offsets, shapes, dtypes or masks."""


class NotFound(Error, KeyError):
    """A named batch does not exist in the store."""


class Exists(Error):
    """A batch with that name already exists."""


class NoSpace(Error):
    """The store has no room for the requested batch."""


class PermissionDenied(Error):
    """The caller may not perform this operation on that batch."""


class Disconnected(Error):
    """The connection to the daemon is closed."""


class CudaError(Error):
    """A CUDA call failed."""


class NotSupported(Error, NotImplementedError):
    """The operation needs something this build or input does not provide
    (for example the native extension, or a device a path does not handle)."""
