"""`kernel`: numba.njit for the rasterizer, with an on-disk cache keyed by the kernels' source.

numba's own ``cache=True`` stamps each compiled function with a hash of its own file only. These
kernels inline and call each other across modules (`fast` calls and inlines `coverage`), so an edit
of one file could leave another file's cached machine code, built from the old source, in use.
Here every kernel's cache entry lives in a folder named by one hash of all the files in
`KERNEL_SOURCES`: any edit of any of them leads to a new folder and a fresh compile, and going back
to an old source finds its old folder again.

Cache folder: ``$DENSEREG_CACHE/numba/<hash>``, where ``$DENSEREG_CACHE`` defaults to
``$XDG_CACHE_HOME/densereg`` or else ``~/.cache/densereg``. Deleting it is always safe. Where it
cannot be created or written, the kernels are compiled in memory in every process (correct, only
slower to start). Folders of old sources are not pruned (a few MB each).

The cache goes through numba's cache classes (`numba.core.caching`): a locator that names the
folder and the stamp, attached to each dispatcher in place of the `FunctionCache` that
``cache=True`` would attach. Those classes are numba internals: if a numba release moves them, the
kernels are compiled uncached rather than risk a stale cache. numba's environment variable
``NUMBA_CACHE_LOCATOR_CLASSES``, when set, overrides the locator and with it this guarantee.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

import numba
from numba.core.dispatcher import Dispatcher

from densereg_data.cache import cache_root as densereg_cache_root

logger = logging.getLogger(__name__)

#: The files of this package whose code numba compiles (this one included: it sets the options).
#: A test checks that every module using `kernel`, and every raster module those import, is listed.
KERNEL_SOURCES = ("jit.py", "constants.py", "coverage.py", "fast.py", "float64.py")

_HERE = Path(__file__).resolve().parent


def source_hash() -> str:
    """sha256 (hex) of the names and bytes of `KERNEL_SOURCES`, read now."""
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        h.update(name.encode() + b"\0" + (_HERE / name).read_bytes() + b"\0")
    return h.hexdigest()


def cache_root() -> Path:
    """The folder that holds one subfolder per kernel source hash (not created here)."""
    return densereg_cache_root() / "numba"


_SOURCE_HASH = source_hash()  # at import: the source the kernels below are compiled from
CACHE_DIR = cache_root() / _SOURCE_HASH[:16]


def _keyed_cache_class() -> type | None:
    """A numba `FunctionCache` whose entries live in `CACHE_DIR`, stamped with the source hash;
    None when this numba's caching internals are not the ones known here."""
    try:
        from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator
    except ImportError:  # pragma: no cover - a numba that moved them
        return None

    class Locator(_CacheLocator):
        def __init__(self, py_func, py_file):
            self._lineno = py_func.__code__.co_firstlineno

        def get_cache_path(self):
            return str(CACHE_DIR)

        def get_source_stamp(self):
            return _SOURCE_HASH

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            locator = cls(py_func, py_file)
            try:
                locator.ensure_cache_path()
            except OSError as e:
                logger.debug("numba kernel cache off: %s is not writable (%s)", CACHE_DIR, e)
                return None
            return locator

    class Impl(CompileResultCacheImpl):
        _locator_classes = [Locator]

    class KeyedCache(FunctionCache):
        _impl_class = Impl

    return KeyedCache


_KEYED_CACHE = _keyed_cache_class()


def kernel(fn: Callable | None = None, **options) -> Callable:
    """``numba.njit(nogil=True, **options)``, cached on disk under `CACHE_DIR` (see the module
    docstring). Use as ``@kernel`` or ``@kernel(inline="always")``."""
    if fn is None:
        return lambda f: kernel(f, **options)
    dispatcher = numba.njit(nogil=True, **options)(fn)
    if _KEYED_CACHE is not None and isinstance(dispatcher, Dispatcher):  # not under NUMBA_DISABLE_JIT
        try:
            dispatcher._cache = _KEYED_CACHE(dispatcher.py_func)  # where ``cache=True`` puts numba's own
        except Exception as e:  # no writable folder, or numba's internals changed: compile uncached
            logger.debug("numba kernel cache off for %s: %s", fn.__qualname__, e)
    return dispatcher
