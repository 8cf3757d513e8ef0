"""The one error hierarchy of densereg, both halves (label generator and network).

Every error raised on purpose is a `DenseRegError`. Errors caused by bad input (a file, a flag, an
array a caller passed) are `InputError`s, which also subclass `ValueError`, so callers that only know
the standard library still catch them; the command-line tools turn them into one line and exit 2.
Messages say what was expected, what was found and where (file, line, sample).
"""

from __future__ import annotations


class DenseRegError(Exception):
    """Base class of every error densereg raises on purpose."""


class InputError(DenseRegError, ValueError):
    """Bad input: the parent of every error a user can cause with a file, a flag or an array."""


class LandmarkFileError(InputError):
    """A landmark file (.pts, .ljson) is missing, unreadable or malformed."""


class ImageFileError(InputError):
    """An image file is missing, unreadable or of an unsupported kind."""


class ShapeError(InputError):
    """An array has the wrong shape, dtype or non-finite values."""


class FitError(InputError):
    """The deformable fit could not produce a usable result (the message says why)."""


class TemplateError(InputError):
    """A face model's definition, files or cached arrays are inconsistent, or it is not known."""


class ShardFormatError(InputError):
    """A shard directory or file does not follow docs/FORMAT.md."""


class CheckpointError(InputError):
    """A network checkpoint is missing, unreadable, or does not fit the model or the shards."""


class ConfigError(InputError):
    """A configuration value (file or flag) has the wrong type or is out of range."""


class BuildError(DenseRegError):
    """A build cannot start or cannot finish (bad configuration, too many skipped samples, ...)."""


class BackendUnavailableError(DenseRegError, ImportError):
    """An optional backend (pyrender/OpenGL, dask, ...) is not installed or cannot start.

    The message names the extra to install, e.g. ``pip install 'densereg[gl]'``.
    """
