"""The "pyrender" raster backend: triangle indices drawn by OpenGL (OSMesa or EGL).

Each triangle is drawn flat and unlit in a colour that encodes ``index + 1`` in 24 bits (R low byte,
B high byte; 0 = background), with vertices duplicated per face so colours are per face, and read
back without anti-aliasing (`triangles_gl`). The "pyrender" backend of `densereg_data.raster.api`
then recomputes barycentrics on the CPU from the vertices. It exists as a cross-check of the CPU
backend and as the speed peer in ``benchmarks/bench_raster.py``.

Convention: pixel centres
    As `densereg_data.raster.api`: the point (x=c, y=r) is the centre of pixel ``[r, c]``. GL samples
    window coordinates (i + 0.5, j + 0.5) with j counted from the bottom, so the orthographic
    camera maps x -> x + 0.5 and y -> height - 0.5 - y (and pyrender flips rows on readback).

Convention: depth
    Smaller depth is nearer (GL_LESS on -depth shifted in front of the camera). GL's own fill rule
    (top-left in window coordinates, y up: pixel centres on a horizontal edge go to the triangle
    above it in our images, not below) and 24-bit depth decide edge pixels and ties, so a few
    pixels differ from the CPU backend (1 of 26,456 on the face template at 256 x 256).

Setup (Debian): ``apt-get install libosmesa6`` (OSMesa) or ``libegl1 libegl-mesa0
libgl1-mesa-dri`` (EGL); ``PYOPENGL_PLATFORM=osmesa`` or ``egl`` (osmesa is the default here when
unset); ``pip install 'PyOpenGL>=3.1.7'`` and ``pip install --no-deps pyrender==0.1.45`` (pyrender
pins PyOpenGL 3.1.0, which fails with OSMesa).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

from densereg_data.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install libosmesa6 (or libegl1 libegl-mesa0 libgl1-mesa-dri), set PYOPENGL_PLATFORM=osmesa|egl,"
    " pip install 'PyOpenGL>=3.1.7' and pip install --no-deps pyrender==0.1.45"
)

_LOCK = threading.Lock()
_RENDERER: Any = None  # the one OffscreenRenderer, created lazily and reused
_RENDERER_SIZE: tuple[int, int] | None = None


def _pyrender() -> Any:
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    try:
        import pyrender
    except Exception as e:  # ImportError, or OpenGL failing to load its platform library
        raise BackendUnavailableError(f"pyrender backend unavailable ({e}); {INSTALL_HINT}") from e
    return pyrender


def _single_sample(renderer: Any) -> None:
    """Make pyrender's "multisample" framebuffer single-sample, so colours are never blended."""
    from OpenGL import GL
    from pyrender.renderer import Renderer

    class _SingleSampleRenderer(Renderer):  # type: ignore[misc, valid-type]
        def _configure_main_framebuffer(self) -> None:
            fresh = self._main_fb is None or self._main_fb_dims != (
                self.viewport_width,
                self.viewport_height,
            )
            super()._configure_main_framebuffer()
            if fresh:
                w, h = self.viewport_width, self.viewport_height
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_cb_ms)
                GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, 0, GL.GL_RGBA, w, h)
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_db_ms)
                GL.glRenderbufferStorageMultisample(
                    GL.GL_RENDERBUFFER, 0, GL.GL_DEPTH_COMPONENT24, w, h
                )

    renderer.__class__ = _SingleSampleRenderer


def get_renderer(size: tuple[int, int]) -> Any:
    """The shared pyrender OffscreenRenderer for (height, width), created on first use.

    Raises `BackendUnavailableError` when pyrender or a GL context is missing.
    """
    global _RENDERER, _RENDERER_SIZE
    pyrender = _pyrender()
    with _LOCK:
        if _RENDERER is not None and _RENDERER_SIZE == tuple(size):
            return _RENDERER
        if _RENDERER is not None:
            _RENDERER.delete()
            _RENDERER = None
        h, w = size
        try:
            r = pyrender.OffscreenRenderer(viewport_width=w, viewport_height=h)
            _single_sample(r._renderer)
        except Exception as e:
            raise BackendUnavailableError(
                f"cannot create an OpenGL context with PYOPENGL_PLATFORM="
                f"{os.environ.get('PYOPENGL_PLATFORM')} ({type(e).__name__}: {e}); {INSTALL_HINT}"
            ) from e
        _RENDERER, _RENDERER_SIZE = r, (int(h), int(w))
        return r


def encode_ids(n_faces: int) -> np.ndarray:
    """(F,) face index -> (F, 3) uint8 colour of ``index + 1`` (R low byte); 0 is background."""
    if n_faces >= (1 << 24) - 1:
        raise BackendUnavailableError(f"pyrender backend encodes < 16777215 faces, got {n_faces}")
    ids = np.arange(1, n_faces + 1, dtype=np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], 1).astype(np.uint8)


def decode_ids(color: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colour -> (H, W) int32 face index, -1 on background."""
    c = color.astype(np.int32)
    return c[..., 0] + (c[..., 1] << 8) + (c[..., 2] << 16) - 1


def build_scene(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool = False
) -> Any:
    """A pyrender Scene drawing each face in its id colour, with the pixel-centre camera.

    vertices: (V, 3) float (x, y, depth) pixels; faces: (F, 3) int; size: (height, width).
    """
    pyrender = _pyrender()
    h, w = size
    f = faces[:, [0, 2, 1]] if cull_backfaces else faces  # our front (CCW, y down) is CW in GL
    corners = np.asarray(vertices, dtype=np.float64)[f.reshape(-1)]  # (3F, 3)
    depth = corners[:, 2]
    z_near = float(depth.min()) if depth.size else 0.0
    z_range = float(depth.max()) - z_near if depth.size else 0.0
    pos = np.empty_like(corners, dtype=np.float32)
    pos[:, 0] = corners[:, 0] + 0.5 - w / 2
    pos[:, 1] = h / 2 - 0.5 - corners[:, 1]
    pos[:, 2] = -(depth - z_near) - 1.0  # nearest at z = -1, in front of the camera at the origin
    colors = np.repeat(encode_ids(len(faces)), 3, axis=0)
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0])
    prim = pyrender.Primitive(positions=pos, color_0=colors, material=material, mode=4)
    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[1.0, 1.0, 1.0])
    scene.add(pyrender.Mesh([prim]))
    camera = pyrender.OrthographicCamera(
        xmag=w / 2, ymag=h / 2, znear=0.5, zfar=z_range + 1.5 + 1e-3 * max(z_range, 1.0)
    )
    scene.add(camera, pose=np.eye(4))
    return scene


def _flags(cull_backfaces: bool) -> int:
    pyrender = _pyrender()
    flags = pyrender.RenderFlags.FLAT
    if not cull_backfaces:
        flags |= pyrender.RenderFlags.SKIP_CULL_FACES
    return flags


def render_ids(scene: Any, size: tuple[int, int], cull_backfaces: bool = False) -> np.ndarray:
    """Render a `build_scene` scene and read back the (H, W) int32 triangle image (-1 background)."""
    renderer = get_renderer(size)
    color, _ = renderer.render(scene, flags=_flags(cull_backfaces))
    return decode_ids(color)


def render_no_readback(scene: Any, size: tuple[int, int], cull_backfaces: bool = False) -> None:
    """Draw the scene and wait for GL to finish, without reading pixels back (for benchmarks)."""
    from OpenGL import GL

    renderer = get_renderer(size)
    renderer._platform.make_current()
    flags = _flags(cull_backfaces) | _pyrender().RenderFlags.OFFSCREEN
    renderer._renderer.viewport_width, renderer._renderer.viewport_height = size[1], size[0]
    renderer._renderer._update_context(scene, flags)
    renderer._renderer._forward_pass(scene, flags)
    GL.glFinish()


def triangles_gl(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], *, cull_backfaces: bool = False
) -> np.ndarray:
    """The (H, W) int32 triangle image (-1 = background) drawn by OpenGL; inputs as validated by
    `densereg_data.raster.api.rasterize`."""
    scene = build_scene(vertices, faces, size, cull_backfaces)
    tri = render_ids(scene, size, cull_backfaces).astype(np.int32)
    tri[(tri >= len(faces))] = -1  # cannot happen with exact colours; never index out of range
    return np.ascontiguousarray(tri)
