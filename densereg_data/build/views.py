"""New views of a fitted face with exact labels: 3D face profiling, after 3DDFA's 300W-LP.

`render_views(labeller, image, labels, spec, size, margin)` turns the fitted face of one labelled
sample by each (yaw, pitch) delta of a `ViewSpec` and returns, per delta, the shard sample of the new
view or a skip. U-V, parts and landmarks are exact (rendered from the rotated fitted mesh); the image
is the photo re-projected through that mesh, with the background moved continuously with the head.

How a view is made
1. Pose: ``yaw' = yaw + s * dyaw`` with s the sign of the source yaw (+1 at 0), so positive deltas turn
   the face further towards profile (3DDFA); ``pitch' = pitch + dpitch``; roll and camera scale kept.
   The head turns about a pivot that keeps its image position: on the template's vertical midline
   (x = 0) at the mean height and depth of its outermost vertices (the ears for menpo3d), near where
   the neck's turning and nodding axes meet, so the face swings as a head does, not about the nose.
2. Labels: the view's crop is the one crop rule (`crop_from_landmarks`) around the view's landmarks
   in source-image pixels; U-V and parts are `render_uv_parts` of the rotated mesh in it (what the
   labeller renders); the landmarks are `Fitter.project_landmarks` (the jaw on the new silhouette),
   OCCLUDED where another part of the face lies in front of them.
3. Face texture: each vertex takes a position in the source image: its own projection where the
   source z-buffer shows its front; its mirror vertex's (the template is symmetric about x = 0) where
   it was hidden, or seen at a grazing angle while the mirror was seen clearly; else a blend of the
   nearest textured vertices' (stretching). The raster interpolates these positions (exact per
   triangle: the camera is orthographic); a triangle whose corners come from far-apart places takes
   its nearest corner's, so no streak runs across a mirror seam. Where the view sees the mesh's back
   (the inside of the far cheek through an open mouth) it shows the background layer instead.
4. Background: anchors at a spread of the face's own seen vertices and on the outline of its
   projection in the source (3D points of the fitted mesh), rings around that outline at its depth,
   and a fixed frame of far anchors are triangulated once (Delaunay, in the source image); per view
   the face's anchors turn with the head, the rings' motion fading to none `FOLLOW` face radii beyond
   the outline. The mesh is rasterized with depth: as its border does not move, every pixel inside
   it is covered (folds resolve by depth; what showed through an open mouth moves with the face);
   pixels outside it stay put; the face is drawn over it.
5. One bilinear sample of the source image per output pixel, black beyond the image's edges as in
   the original crop (the image is block-averaged first when the crop shrinks it 2x or more, as
   `warp_crop` does).

Convention: view samples
    Each sample has exactly the arrays of `densereg_data.build.sample.label_sample` (docs/FORMAT.md),
    with ``source`` "" and ``source_size`` (0, 0) for the caller to fill, plus ``view_delta`` (2,)
    float32, the (yaw, pitch) delta in degrees. ``crop_from_image`` maps the pixels of the `image`
    passed in (far background does not move, so it is where the view's crop lies in that image); a
    caller that labelled a reduced image composes it with ``reduced_from_image``, as for the source.
    ``pose`` is (yaw', pitch', roll) as above; ``crop_from_template`` the turned camera in view-crop
    pixels; ``landmark_state`` VISIBLE or OCCLUDED (never MISSING: every point is projected).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from densereg_data.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["ViewSpec", "render_views", "MAX_YAW", "MAX_PITCH", "MAX_HIDDEN", "MAX_VIEWS"]

#: |yaw'| beyond this shows the back of the head, where the fitted face has no surface.
MAX_YAW = 90.0
#: |pitch'| beyond this: the template's forehead or neck border becomes the outline, the brows fall on
#: the eyes, and the jaw contour rule (which slides sideways) no longer finds the silhouette; 300W-LP
#: and AFLW2000-3D hold almost no faces beyond it.
MAX_PITCH = 60.0
#: A view with more of its face pixels stretched (seen neither in the source nor through the mirror)
#: than this teaches mostly smeared texture: skipped. On synthetic prior faces: a frontal face turned to
#: profile stretches about 0.14 (inside the ears, under the jaw), one turned back from yaw 40 or 70 about
#: 0.02 (the mirror was seen); the fraction grows with what the source hid from every side, as under
#: the chin of a face looking down 30 degrees (0.2 at a 45-degree turn, 0.35 at 90).
MAX_HIDDEN = 0.25
#: The most (yaw, pitch) combinations one spec may ask for.
MAX_VIEWS = 64


# ----------------------------------------------------------------------------------------------------
# the spec


def _clip(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _degrees(text: str, flag: str, name: str) -> list[float]:
    body = text.strip()
    if body.lower().startswith(name + "="):
        body = body[len(name) + 1:]
    items = [p.strip() for p in body.split(",")]
    if not all(items):
        raise ConfigError(f"{flag} {_clip(text)}: expected comma-separated degrees like '15,30,45', found an empty value")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"{flag} {_clip(text)}: {_clip(item)} is not a number of degrees") from None
        if not (math.isfinite(value) and abs(value) <= 90.0):
            raise ConfigError(f"{flag} {_clip(text)}: {_clip(item)} degrees is outside [-90, 90]")
        out.append(value + 0.0)  # -0.0 -> 0.0
    return out


@dataclass(frozen=True)
class ViewSpec:
    """Which new views to render: (yaw_delta, pitch_delta) pairs in degrees, each in [-90, 90], never
    (0, 0), at most `MAX_VIEWS`; stored sorted and unique. A positive yaw delta turns the face further
    towards profile (see the module docstring). Raises ConfigError."""

    deltas: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            pairs = {(float(y) + 0.0, float(p) + 0.0) for y, p in self.deltas}
        except (TypeError, ValueError):
            got = _clip(repr(self.deltas))
            raise ConfigError(f"--views: deltas must be (yaw, pitch) pairs of degrees, got {got}") from None
        text = ",".join(f"{y:g}:{p:g}" for y, p in sorted(pairs))
        if not pairs:
            raise ConfigError("--views: no view to render (no delta)")
        if any(not (math.isfinite(v) and abs(v) <= 90.0) for pair in pairs for v in pair):
            raise ConfigError(f"--views {_clip(text)}: every delta must be finite degrees in [-90, 90]")
        if (0.0, 0.0) in pairs:
            raise ConfigError(f"--views {_clip(text)}: the delta (0, 0) is the source itself")
        if len(pairs) > MAX_VIEWS:
            raise ConfigError(f"--views {_clip(text)}: {len(pairs)} views per face, at most {MAX_VIEWS}")
        object.__setattr__(self, "deltas", tuple(sorted(pairs)))

    @classmethod
    def parse(cls, yaw: str, pitch: str | None = None) -> "ViewSpec":
        """From the command line: `yaw` "yaw=15,30,45" (or "15,30,45"), `pitch` "0,-15,15" (or
        "pitch=...") or None (0 only): every combination but (0, 0). `yaw` may instead be `to_text`'s
        "yaw:pitch" pairs (`pitch` None). Raises ConfigError, one line naming --views / --views-pitch
        and the value."""
        if not isinstance(yaw, str) or not (pitch is None or isinstance(pitch, str)):
            raise ConfigError(f"--views: expected text like 'yaw=15,30,45', got {type(yaw).__name__}")
        if ":" in yaw:
            if pitch is not None:
                raise ConfigError(f"--views {_clip(yaw)}: 'yaw:pitch' pairs take no --views-pitch (got {_clip(pitch)})")
            combos = set()
            for item in yaw.split(","):
                halves = item.split(":")
                if len(halves) != 2:
                    raise ConfigError(f"--views {_clip(yaw)}: {_clip(item)} is not a 'yaw:pitch' pair")
                combos.add((_degrees(halves[0], "--views", "yaw")[0], _degrees(halves[1], "--views", "pitch")[0]))
        else:
            yaws = set(_degrees(yaw, "--views", "yaw"))
            pitches = {0.0} if pitch is None else set(_degrees(pitch, "--views-pitch", "pitch"))
            combos = {(y, p) for y in yaws for p in pitches}
        combos.discard((0.0, 0.0))
        flag = "--views" if pitch is None else f"--views {_clip(yaw)} --views-pitch"
        shown = _clip(yaw if pitch is None else pitch)
        if not combos:
            raise ConfigError(f"{flag} {shown}: no view to render (every delta is 0)")
        if len(combos) > MAX_VIEWS:
            raise ConfigError(f"{flag} {shown}: {len(combos)} combinations, at most {MAX_VIEWS}")
        return cls(tuple(sorted(combos)))

    def to_text(self) -> str:
        """Canonical text for config.json: sorted "yaw:pitch" pairs, e.g. "15:0,30:-15";
        ``ViewSpec.parse(spec.to_text()) == spec``."""
        return ",".join(f"{y:g}:{p:g}" for y, p in self.deltas)


# ----------------------------------------------------------------------------------------------------
# the one public function


def render_views(labeller, image: np.ndarray, labels, spec: ViewSpec, size: int, margin: float, *,
                 max_hidden: float = MAX_HIDDEN) -> list[dict]:
    """New views of one labelled face: per delta of `spec`, in order, ``{"delta": (yaw, pitch),
    "sample": dict or None, "skip": None or {"kind": str, "reason": str}}``. Never raises on a bad face.

    labeller: the `Labeller` that made `labels`; image: (H, W, 3) uint8, the image it was given;
    labels: its `CropLabels` (with `fit`, in crop pixels); size, margin: the build's crop rule;
    max_hidden: `MAX_HIDDEN`. Skip kinds: "view_pose" (beyond `MAX_YAW` / `MAX_PITCH`), "view_hidden"
    (more than `max_hidden` of the turned face stretched), "view_error" (anything else, with why).

    Convention: view samples (module docstring). The same inputs give byte-identical outputs.
    """
    deltas = list(spec.deltas)
    try:
        poses = [_turned_pose(labels.pose, *d) for d in deltas]
        turning = any(isinstance(p, tuple) for p in poses)
        from densereg_data.build.view_render import FaceTurner

        face = FaceTurner(labeller, image, labels, int(size), float(margin)) if turning else None
    except Exception as exc:  # noqa: BLE001 - a bad face skips its views, never ends a build
        log.debug("cannot turn a face: %s", exc, exc_info=True)
        skip = {"kind": "view_error", "reason": f"cannot turn this face: {type(exc).__name__}: {exc}"}
        return [{"delta": d, "sample": None, "skip": dict(skip)} for d in deltas]
    out = []
    for d, pose in zip(deltas, poses):
        if isinstance(pose, dict):  # beyond the limits: a "view_pose" skip
            out.append({"delta": d, "sample": None, "skip": pose})
            continue
        try:
            sample, skip = face.view(d, pose, max_hidden)
        except Exception as exc:  # noqa: BLE001
            log.debug("view %s failed: %s", d, exc, exc_info=True)
            sample, skip = None, {"kind": "view_error", "reason": f"view {d}: {type(exc).__name__}: {exc}"}
        out.append({"delta": d, "sample": sample, "skip": skip})
    return out


def _turned_pose(pose, dyaw: float, dpitch: float) -> tuple[float, float, float] | dict:
    """(yaw', pitch', roll) in degrees of the source `pose` (3,) turned by (dyaw, dpitch) (module
    docstring, 1), or the "view_pose" skip when that lies beyond `MAX_YAW` / `MAX_PITCH`."""
    yaw, pitch, roll = (float(v) for v in np.asarray(pose, np.float64))
    yaw1 = yaw + (1.0 if yaw >= 0 else -1.0) * dyaw
    pitch1 = pitch + dpitch
    if not abs(yaw1) <= MAX_YAW:
        return {"kind": "view_pose", "reason": f"turns the face to yaw {yaw1:.1f} degrees, beyond the {MAX_YAW:.0f} "
                                               "the fit supports"}
    if not abs(pitch1) <= MAX_PITCH:
        return {"kind": "view_pose", "reason": f"turns the face to pitch {pitch1:.1f} degrees, beyond the "
                                               f"{MAX_PITCH:.0f} views support"}
    return yaw1, pitch1, roll
