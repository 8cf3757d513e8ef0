"""Rotations, head poses and the camera that maps the template frame into an image.

Convention: camera
    `Camera.project` maps template-frame points (X, Y, Z) (mm, y up, face looking along +z) to image
    (x, y, depth): x right, y down, in pixels with integer coordinates at pixel centres; depth grows away
    from the viewer (smaller is nearer). For the orthographic camera this is the affine map
    ``[x, y, depth] = s * Q @ [X, Y, Z] + [tx, ty, 0]`` with Q a rotation; a frontal, upright face has
    Q = diag(1, -1, -1).

Convention: pose
    The head rotation in the template frame is ``R = diag(1, -1, -1) @ Q`` and
    ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, angles in degrees. Positive yaw turns the nose towards the
    image right (the subject turns to their left), positive pitch turns the nose down (the forehead
    comes towards the viewer), positive roll turns the face counter-clockwise in the template frame
    (clockwise as seen in the image, whose y axis points down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densereg_data.errors import ShapeError

__all__ = ["FLIP_YZ", "Camera", "rotation_from_pose", "pose_from_rotation", "rotation_angle"]

FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # template frame (y up, z to viewer) -> image frame (y down, depth away)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_pose(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) head rotation R = Rz(roll) Ry(yaw) Rx(pitch) from angles in degrees (template frame)."""
    y, p, r = np.radians([yaw, pitch, roll])
    return _rz(r) @ _ry(y) @ _rx(p)


def pose_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees of a head rotation; the inverse of `rotation_from_pose`."""
    r = rotation
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll])


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Geodesic angle in degrees between two rotations."""
    cos = (np.trace(a @ b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class Camera:
    """A camera mapping template-frame points to image (x, y, depth); see the module's Convention.

    kind: "orthographic" (scale s px/mm) or "perspective" (focal length and principal point in px).
    rotation: (3, 3) Q, image frame from template frame. translation: (3,) in px (orthographic: tz = 0)
    or mm (perspective: the template origin in camera coordinates).
    """

    kind: str
    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0
    focal_length: float = 0.0
    principal_point: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in ("orthographic", "perspective"):
            raise ShapeError(f"camera kind must be 'orthographic' or 'perspective', got {self.kind!r}")
        if self.rotation.shape != (3, 3) or self.translation.shape != (3,):
            raise ShapeError(f"camera rotation must be (3, 3) and translation (3,), got {self.rotation.shape}, {self.translation.shape}")

    def project(self, points: np.ndarray) -> np.ndarray:
        """Template points (n, 3) mm -> image (n, 3) float64: x, y pixels and depth (smaller is nearer)."""
        if self.kind == "orthographic":
            return self.scale * (points @ self.rotation.T) + self.translation
        cam = points @ self.rotation.T + self.translation  # camera frame: x right, y down, z forward
        z = cam[:, 2:3]
        xy = self.focal_length * cam[:, :2] / z + np.asarray(self.principal_point)
        return np.hstack([xy, z])

    @property
    def image_from_template(self) -> np.ndarray:
        """(3, 4) affine [x, y, depth] = M @ [X, Y, Z, 1] (orthographic cameras only)."""
        if self.kind != "orthographic":
            raise ShapeError("a perspective camera has no affine image_from_template")
        return np.hstack([self.scale * self.rotation, self.translation[:, None]])

    @property
    def pose(self) -> np.ndarray:
        """(3,) yaw, pitch, roll in degrees."""
        return pose_from_rotation(FLIP_YZ @ self.rotation)
