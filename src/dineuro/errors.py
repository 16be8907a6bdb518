"""The one exception type users see for bad input.

Every stage validates what it is given at its boundary and raises :class:`InputError` with one
sentence that names the file (when there is one) and the problem. The command line prints that
sentence and exits non-zero without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad input from the user: a file that cannot be read, a wrong shape, an invalid SWC, ...

    Args:
        message: one sentence saying what is wrong.
        path: the offending file, prefixed to the message when given.

    Examples::

        >>> str(InputError("is empty.", path="a.tif"))
        'a.tif: is empty.'
    """

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(message if path is None else f"{self.path}: {message}")
