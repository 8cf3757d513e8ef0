"""Executors for the build: run one function over many samples, yield results in input order.

Registered by name in `EXECUTORS` (a dict filled by `register_executor`); each takes the build config
and returns an object with ``imap(fn, items, *args)`` (an iterator of ``fn(item, *args)`` in the order
of `items`, computed in parallel with a bounded number in flight) and ``close()``.

- ``local``: a process pool of ``--workers`` processes (default: every core); 1 runs in-process.
- ``dask``: dask.distributed; connects to ``--scheduler tcp://host:port``, or starts a LocalCluster on
  127.0.0.1 (loopback only) with ``--workers`` single-threaded workers.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Callable, Iterable, Iterator

from densereg_data.errors import BackendUnavailableError, BuildError

log = logging.getLogger(__name__)

EXECUTORS: dict[str, Callable[[Any], "Executor"]] = {}


def register_executor(name: str):
    def deco(cls):
        EXECUTORS[name] = cls
        return cls

    return deco


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Executor:
    def __init__(self, cfg: Any) -> None:
        self.workers = int(cfg.workers) if cfg.workers else cpu_count()
        self.window = max(4 * self.workers, 8)

    def imap(self, fn: Callable, items: Iterable, *args) -> Iterator:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _ordered(self, submit: Callable[[Any], Any], result: Callable[[Any], Any], items: Iterable) -> Iterator:
        """Keep `window` tasks in flight, yield results in input order."""
        pending: collections.deque = collections.deque()
        it = iter(items)
        for item in it:
            pending.append(submit(item))
            if len(pending) >= self.window:
                break
        while pending:
            head = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(submit(nxt))
            yield result(head)


_END = object()


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the build's process dies, even by SIGKILL (Linux:
    PR_SET_PDEATHSIG; elsewhere a worker notices at its next task through the broken pipe)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)


@register_executor("local")
class LocalExecutor(Executor):
    """A process pool (fork on Linux); workers=1 runs everything in this process."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.pool = None

    def imap(self, fn: Callable, items: Iterable, *args) -> Iterator:
        if self.workers == 1:
            return (fn(item, *args) for item in items)
        import concurrent.futures as cf
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=die_with_parent,
                                           initargs=(os.getpid(),))

        def result(fut):
            try:
                return fut.result()
            except cf.process.BrokenProcessPool:
                raise BuildError("a worker process died (out of memory?); completed shards are kept, rerun to resume") from None

        return self._ordered(lambda item: self.pool.submit(fn, item, *args), result, items)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


@register_executor("dask")
class DaskExecutor(Executor):
    """dask.distributed: `cfg.scheduler` address, or a LocalCluster on 127.0.0.1 (never other interfaces)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise BackendUnavailableError("the dask executor needs dask.distributed: pip install 'densereg[dask]'") from None
        self.cluster = None
        try:
            if cfg.scheduler:
                self.client = Client(cfg.scheduler, timeout="10s")
                self.window = max(4 * sum(self.client.nthreads().values()), 8)
            else:
                # processes=True: TCP on 127.0.0.1 only; processes=False: the in-process transport (no sockets)
                where = {"host": "127.0.0.1"} if cfg.dask_processes else {}
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=cfg.dask_processes,
                                            dashboard_address=None, silence_logs=logging.WARNING, **where)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError, RuntimeError) as exc:
            self.close()
            where = cfg.scheduler or "a local cluster on 127.0.0.1"
            raise BuildError(f"cannot connect to the Dask scheduler at {where}: {exc}") from None

    def imap(self, fn: Callable, items: Iterable, *args) -> Iterator:
        return self._ordered(lambda item: self.client.submit(fn, item, *args, pure=False), lambda f: f.result(), items)

    def close(self) -> None:
        for obj in (getattr(self, "client", None), self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - shutting down
                    pass
        self.cluster = None
