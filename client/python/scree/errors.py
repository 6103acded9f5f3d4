"""Exceptions raised by scree.

Every error scree raises derives from :class:`Error`. Errors that come from the
native client carry the library's negative ``SCREE_E*`` code in ``code``;
errors raised by pure-Python validation have ``code = None``. Subclasses also
derive from the closest built-in exception, so ``except ValueError``,
``except ConnectionError`` or ``except MemoryError`` keep working for callers
who do not know about scree:

- :class:`InvalidArgument` (``ValueError``): EINVAL, ENAMETOOLONG, EOVERFLOW, EMSGSIZE
- :class:`NotFound` (``KeyError``): ENOENT
- :class:`Exists` (``FileExistsError``): EEXIST
- :class:`NoSpace` (``MemoryError``): ENOSPC
- :class:`PermissionDenied` (``PermissionError``): EACCES, EPERM
- :class:`Disconnected` (``ConnectionError``): EDISCONNECTED, ECONNREFUSED
- :class:`Busy` (``retryable`` is true): EAGAIN, EBUSY
- :class:`Timeout` (``TimeoutError``): ETIMEDOUT, a wait that expired
- :class:`NotSupported` (``NotImplementedError``): ENOTSUP, ENODEV
- :class:`Closed` (``ValueError``): a closed :class:`scree.Batch` was used

The ``OSError`` subclasses among them carry the errno of their code in
``errno`` (``None`` for codes without one, such as EDISCONNECTED).
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
    "WrongState",
    "ProtocolError",
    "Busy",
    "Timeout",
    "Closed",
]


class Error(Exception):
    """Base class of scree errors.

    Attributes:
        code: the negative ``SCREE_E*`` code from the C library, or ``None``
            when the error was raised by Python code.
        message: a human-readable explanation.
        retryable: whether the same request may succeed when tried again
            later (true only for :class:`Busy`).
    """

    retryable = False

    def __init__(self, message: str, code: int | None = None) -> None:
        if isinstance(self, OSError):
            # OSError's own constructor would read (message, code) as
            # (errno, strerror): give it the errno of the code instead.
            num = -code if code is not None and 0 < -code < 4000 else None
            if num is None:
                OSError.__init__(self, message)
            else:
                OSError.__init__(self, num, message)
        else:
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


class Exists(Error, FileExistsError):
    """A batch with that name already exists."""


class NoSpace(Error, MemoryError):
    """The store has no room for the requested batch."""


class PermissionDenied(Error, PermissionError):
    """The caller may not perform this operation on that batch."""


class Disconnected(Error, ConnectionError):
    """The connection to the daemon is closed, or nothing listens on its
    socket."""


class CudaError(Error):
    """A CUDA call failed."""


class NotSupported(Error, NotImplementedError):
    """The operation needs something this build or input does not provide
    (for example the native extension, or a device a path does not handle)."""


class WrongState(Error):
    """The batch is in the wrong state for the request: getting a batch that
    is not sealed yet, or sealing one twice."""


class ProtocolError(Error):
    """The daemon and this client do not understand each other (a protocol
    version mismatch or a malformed message)."""


class Busy(Error):
    """The daemon cannot take the request now (EAGAIN, EBUSY): it is shutting
    down, over its connection limit, or another daemon holds the socket.
    ``retryable`` is true: the same request may succeed later."""

    retryable = True


class Timeout(Error, TimeoutError):
    """A wait expired: ``Client.get(name, wait=seconds)`` found no sealed
    batch of that name in time (ETIMEDOUT), or a watch had no event in time."""


class Closed(Error, ValueError):
    """A closed object was used: a :class:`scree.Batch` after ``close()`` or
    the end of its ``with`` block (as Python's files raise ``ValueError``)."""
