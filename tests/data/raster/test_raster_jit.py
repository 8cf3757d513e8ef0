"""The numba disk cache of the raster kernels is keyed by their source: an edit is never served stale."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import densereg_data
from densereg_data.raster import jit

RASTER = Path(jit.__file__).resolve().parent

# Draws the two-triangle square in a fresh process; prints where the package came from, how many
# pixels were covered, and whether zbuffer_fixed came from the disk cache.
PROBE = """
import json, numpy as np
import densereg_data.raster.api as api, densereg_data.raster.fast as fast
v = np.array([[2.0, 1.0, 5.0], [10.0, 1.0, 5.0], [10.0, 9.0, 5.0], [2.0, 9.0, 5.0]])
r = api.rasterize(v, np.array([[0, 3, 2], [0, 2, 1]]), (12, 17))
stats = fast.zbuffer_fixed.stats
print(json.dumps({"file": fast.__file__, "covered": int(r.mask.sum()),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def _probe(src: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "DENSEREG_CACHE": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_an_edited_kernel_file_is_compiled_afresh(tmp_path):
    # A copy of the raster package (and the little it imports) in tmp_path, its cache in tmp_path too.
    # numba's own cache=True would serve fast.zbuffer_fixed from disk after an edit of coverage.py:
    # fast.py did not change, and its stamp is fast.py's alone.
    src = tmp_path / "src"
    (src / "densereg_data").mkdir(parents=True)
    (src / "densereg_data" / "__init__.py").write_text("")
    shutil.copy(Path(densereg_data.__file__).parent / "errors.py", src / "densereg_data" / "errors.py")
    shutil.copytree(RASTER, src / "densereg_data" / "raster", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"

    first = _probe(src, cache)
    assert Path(first["file"]).resolve().is_relative_to(src.resolve())  # the copy, not the installed package
    assert first["covered"] == 64 and first["misses"] == 1
    again = _probe(src, cache)
    assert again["covered"] == 64 and again["hits"] == 1  # served from the disk cache: the cache works

    coverage = src / "densereg_data" / "raster" / "coverage.py"
    text = coverage.read_text()
    rule = "return (area != 0) & ~(cull & (area > 0))"
    assert text.count(rule) == 1
    coverage.write_text(text.replace(rule, "return (area > 0) & ~(cull & (area > 0))  # clockwise only"))
    edited = _probe(src, cache)
    assert edited["misses"] == 1 and edited["hits"] == 0
    assert edited["covered"] == 0  # the square is counter-clockwise: the edited rule draws nothing

    coverage.write_text(text)  # back to the first source: its cache folder is still there
    assert _probe(src, cache) == again
    assert len(list((cache / "numba").iterdir())) == 2


def test_kernel_sources_list_every_compiled_module():
    # every module of the package that compiles kernels, or that a kernel module imports, is hashed
    listed = set(jit.KERNEL_SOURCES)
    for path in RASTER.glob("*.py"):
        if "@kernel" in path.read_text():
            assert path.name in listed, f"{path.name} defines kernels but is not in jit.KERNEL_SOURCES"
    for name in listed:
        for node in ast.walk(ast.parse((RASTER / name).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("densereg_data.raster."):
                imported = node.module.rsplit(".", 1)[1] + ".py"
                assert imported in listed, f"{name} imports {imported}, which is not in jit.KERNEL_SOURCES"


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DENSEREG_CACHE", str(tmp_path / "mine"))
    assert jit.cache_root() == tmp_path / "mine" / "numba"
    monkeypatch.delenv("DENSEREG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_root() == tmp_path / "xdg" / "densereg" / "numba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jit.cache_root() == tmp_path / "home" / ".cache" / "densereg" / "numba"
    assert jit.CACHE_DIR.name == jit.source_hash()[:16]
