"""Exception classes for user-facing errors.

Every error a user can cause (bad file, bad dataset, bad option) is a ``MedsegError``. The
CLI prints its message as one line on stderr and exits with code 1; anything else is a bug
and shows a traceback. Messages name the file and the fix.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class: a problem with the user's input, not a bug in medseg."""


class ImageIOError(MedsegError):
    """A file cannot be read or written (missing, corrupt, unsupported format)."""


class DatasetError(MedsegError):
    """A dataset folder or dataset.json is inconsistent."""


class GeometryError(MedsegError):
    """Two images that must share a grid do not (shape, spacing, origin or direction)."""


class ConfigError(MedsegError):
    """An option, plan or registry name is invalid."""


class OverwriteError(MedsegError):
    """An output exists and ``overwrite`` was not given."""


class DiskFullError(MedsegError):
    """The disk (or quota) filled up while writing; the previous version of the file is intact."""


class UnsafeFileError(MedsegError):
    """A file would need arbitrary code to load (a pickle with objects other than tensors and
    plain values); medseg refuses it rather than run what it holds."""


class LockedError(MedsegError):
    """Another process is working in the same folder (a fold being trained, a prediction
    folder being written); the message names it (pid, command, since when)."""


def listing(items: list[str], *, limit: int = 5, sep: str = ", ") -> str:
    """The first ``limit`` items for a message, then how many more there are.

    Example:
        >>> listing(["a", "b", "c"], limit=2)
        'a, b and 1 more'
    """
    if len(items) <= limit:
        return sep.join(items)
    joiner = " and" if sep == ", " else f"{sep.rstrip()} and"  # "a; b; and 2 more"
    return f"{sep.join(items[:limit])}{joiner} {len(items) - limit} more"
