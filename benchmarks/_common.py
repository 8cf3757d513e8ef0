"""Small timing helpers shared by the benchmark scripts: median of N runs, the machine, a markdown
table and one JSON line. Standard library + numpy only."""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Callable

import numpy as np

try:  # page-fault counts (Unix only)
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def time_it(fn: Callable[[], Any], runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """Wall-clock milliseconds of ``fn()``: median, min and max of ``runs`` calls after ``warmup``,
    and the minor page faults per call (first touches of memory the allocator got from the OS:
    a large part of the time of calls that write tens of MB, and dependent on the allocator's
    history, so reported beside the time; 0 where unavailable)."""
    for _ in range(warmup):
        fn()
    times = []
    faults_before = _minor_faults()
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.asarray(times)
    return {"median_ms": float(np.median(t)), "min_ms": float(t.min()), "max_ms": float(t.max()),
            "runs": runs, "faults_per_run": (_minor_faults() - faults_before) / runs}


def machine() -> str:
    """One line describing the machine: CPU model, logical cores, load average, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} logical cores, load {load:.2f}, "
            f"Python {platform.python_version()}")


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows of dicts -> a markdown table with the given columns (floats to 3 decimals)."""

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def json_line(name: str, **fields: Any) -> str:
    """One JSON line: {"benchmark": name, ...fields}."""
    return json.dumps({"benchmark": name, **fields}, sort_keys=False)
