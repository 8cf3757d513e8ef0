"""The errors densereg raises.

Every error is a `DenseRegError`; errors caused by bad input also subclass `ValueError`, so callers
that only know the standard library still catch them. Messages say what was expected, what was found
and where (file, line, sample).
"""

from __future__ import annotations


class DenseRegError(Exception):
    """Base class of every error densereg raises on purpose."""


class LandmarkFileError(DenseRegError, ValueError):
    """A landmark file (.pts, .ljson) is missing, unreadable or malformed."""


class ImageFileError(DenseRegError, ValueError):
    """An image file is missing, unreadable or of an unsupported kind."""


class ShapeError(DenseRegError, ValueError):
    """An array has the wrong shape, dtype or non-finite values."""


class FitError(DenseRegError, ValueError):
    """The deformable fit could not produce a usable result (the message says why)."""


class TemplateError(DenseRegError, ValueError):
    """A template definition or its cached arrays are inconsistent."""


class ShardFormatError(DenseRegError, ValueError):
    """A shard directory or file does not follow docs/FORMAT.md."""


class BuildError(DenseRegError):
    """A build cannot start or cannot finish (bad configuration, too many skipped samples, ...)."""


class BackendUnavailableError(DenseRegError, ImportError):
    """An optional backend (pyrender/OpenGL, dask, ...) is not installed or cannot start.

    The message names the extra to install, e.g. ``pip install 'densereg[gl]'``.
    """
