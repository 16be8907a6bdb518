"""The one exception type users see for bad input.

Every stage validates what it is given at its boundary and raises :class:`InputError` with one
sentence that names the file (when there is one) and the problem. The command line prints that
sentence and exits with code 2 without a traceback. A failure of the machine rather than of the
input (a full disk, a read-only folder: an ``OSError``) is one sentence too
(:func:`environment_failure`), with exit code 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from os import PathLike

#: What a user can do about the environment failures we know (None: a short write).
_REMEDIES = {
    None: "the disk is probably full: free some space or write elsewhere",
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EROFS: "choose an output folder on a writable disk",
    errno.EACCES: "choose a place you may write to (or read from)",
    errno.EPERM: "choose a place you may write to (or read from)",
}


class InputError(ValueError):
    """Bad input from the user: a file that cannot be read, a wrong shape, an invalid SWC, ...

    Parameters
    ----------
    message : str
        One sentence saying what is wrong.
    path : str or os.PathLike, optional
        The offending file, prefixed to the message when given.

    Examples
    --------
    >>> str(InputError("is empty.", path="a.tif"))
    'a.tif: is empty.'
    """

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(message if path is None else f"{self.path}: {message}")


def environment_failure(exc: OSError) -> str:
    """One sentence for an ``OSError``: the file, what went wrong and what to do about it.

    Some writers report a full disk only as a short write without an error number ("N requested
    and M written"); that is said to be a full disk, its likely cause.

    Examples
    --------
    >>> environment_failure(OSError(errno.EROFS, "Read-only file system", "/mnt/out/a.swc"))
    '/mnt/out/a.swc: Read-only file system; choose an output folder on a writable disk.'
    """
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc)
    remedy = _REMEDIES.get(exc.errno)
    return f"{where}{reason}" + (f"; {remedy}." if remedy else ".")

