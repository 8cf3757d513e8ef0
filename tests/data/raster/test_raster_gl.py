"""The pyrender backend (marked gl where it needs an OpenGL context) against the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from raster_cases import SIZE, template_in_pixels
from raster_cases import square_fixture  # noqa: F401 (fixtures)

from densereg_data.errors import BackendUnavailableError
from densereg_data.raster.api import rasterize


def _gl_or_skip():
    from densereg_data.raster import gl as raster_gl

    try:
        raster_gl.get_renderer((8, 8))
    except BackendUnavailableError as e:
        pytest.skip(f"no OpenGL context: {e}")
    return raster_gl


@pytest.mark.gl
def test_gl_square_matches_cpu(square):
    _gl_or_skip()
    v, f, _ = square
    a = rasterize(v, f, SIZE)
    b = rasterize(v, f, SIZE, backend="pyrender")
    # GL's fill rule is top-left in window coordinates (y up): horizontal edges go to the other
    # side, so the square moves down one row; everything both cover agrees.
    both = a.mask & b.mask
    assert both.sum() == 7 * 8
    np.testing.assert_array_equal(a.triangle[both], b.triangle[both])
    assert b.mask[2:10, 2:10].all() and not b.mask[1].any()


@pytest.mark.gl
def test_gl_template_agrees_with_cpu():
    _gl_or_skip()
    v, f = template_in_pixels(256)
    a = rasterize(v, f, (256, 256))
    b = rasterize(v, f, (256, 256), backend="pyrender")
    fg = a.mask | b.mask
    agree = (a.triangle[fg] == b.triangle[fg]).mean()
    print(f"GL/CPU triangle agreement on {fg.sum()} foreground pixels: {agree:.4%}")
    assert agree >= 0.995


def test_gl_unavailable_names_what_to_install(monkeypatch, square):
    import sys

    from densereg_data.raster import gl as raster_gl

    monkeypatch.setitem(sys.modules, "pyrender", None)  # import fails as if not installed
    v, f, _ = square
    with pytest.raises(BackendUnavailableError, match="libosmesa6.*PYOPENGL_PLATFORM.*--no-deps"):
        raster_gl.triangles_gl(v, f, SIZE)
