"""The house's architecture, checked: no import cycle, arrows point down the layers, modules stay small,
and the light layer imports nothing heavy.

The import graph is read from the source (every ``import`` statement, at module level or inside a
function: a lazy import is still an arrow), so the check needs none of the heavy packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package name -> source folder (pyproject's package-dir)
PACKAGES = {"densereg_data": ROOT / "densereg_data", "densereg_net": ROOT / "densereg_net", "densereg_cli": ROOT / "cli"}
#: layer of each densereg_data subpackage or module: a module may import only layers <= its own.
LAYERS = {"version": 0, "conventions": 0, "errors": 0, "cache": 0, "config": 1, "format": 1, "io": 1, "geometry": 1, "draw": 1,
          "schemes": 1,
          "raster": 2, "face": 3, "testing": 4, "build": 4, "__init__": 5}
#: what densereg_net may use of densereg_data (the light layer: numpy, h5py, PIL).
LIGHT = {"version", "conventions", "errors", "config", "format", "io", "geometry", "draw", "schemes", "__init__"}
HEAVY = ("menpo", "menpo3d", "numba", "scipy", "trimesh", "pyrender", "vtk")
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (resolved to the longest known module name)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "densereg_data":
        return None
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_no_import_cycle(graph):
    """Depth-first search for a back edge; the failure names the cycle."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            # a package's __init__ importing its own submodules is how packages expose names, not a cycle
            if n.startswith(m + "."):
                continue
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_arrows_point_down_the_layers(graph):
    bad = []
    for m, deps in graph.items():
        lm = _layer(m)
        for d in deps:
            ld = _layer(d)
            if m.startswith("densereg_net") and d.startswith("densereg_data") and d.split(".")[1:2][0:1] and \
                    d.split(".")[1] not in LIGHT:
                bad.append(f"{m} -> {d} (densereg_net may use only the light layer)")
            if lm is not None and ld is not None and ld > lm and not d.startswith(m + "."):
                bad.append(f"{m} (layer {lm}) -> {d} (layer {ld})")
            if d.startswith("densereg_cli") and not m.startswith("densereg_cli"):
                bad.append(f"{m} -> {d} (libraries never import the CLI)")
    assert not bad, "\n".join(sorted(bad))


def test_no_click_outside_cli():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("densereg_data", "densereg_net")
                 for p in PACKAGES[pkg].rglob("*.py") if "import click" in p.read_text(encoding="utf-8")]
    assert not offenders, f"click code belongs in cli/: {offenders}"


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in _modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_light_layer_pulls_nothing_heavy():
    """`import densereg_data` and its light modules, in a fresh interpreter: none of the heavy stack."""
    code = ("import sys, densereg_data, densereg_data.format, densereg_data.io.images, densereg_data.io.landmarks, "
            "densereg_data.geometry.crop, densereg_data.config, densereg_data.draw, densereg_data.conventions; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_heavy_names_resolve_lazily_and_are_listed():
    import densereg_data

    for name in ("label_face", "Labeller", "load_face_model"):
        assert name in densereg_data.__all__ and name in dir(densereg_data)
