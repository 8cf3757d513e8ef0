"""Test doubles for the build: a fast deterministic labeller and template facts (no menpo, no fit).

The fake crops the landmarks' bounding box (plus margin) with nearest-neighbour sampling, so its
outputs depend on the image and the landmarks like the real labeller's, and are exactly repeatable.
"""

from __future__ import annotations

import os
import time

import numpy as np

from densereg_data.errors import FitError
from densereg_data.face.labeller import CropLabels

MODEL_SIZE = 5


class FakeLabeller:
    def __init__(self) -> None:
        self.delay = float(os.environ.get("DENSEREG_FAKE_DELAY", "0"))

    def label_crop(self, image, landmarks, size=256, margin=0.25):
        if self.delay:
            time.sleep(self.delay)
        if landmarks[:, 0].max() - landmarks[:, 0].min() < 1e-6:
            raise FitError("degenerate landmarks (all on one vertical line)")
        lo, hi = landmarks.min(0), landmarks.max(0)
        centre = (lo + hi) / 2
        side = max(hi - lo) * (1 + 2 * margin)
        s = size / side
        a = np.array([[s, 0, (size - 1) / 2 - s * centre[0]], [0, s, (size - 1) / 2 - s * centre[1]]])
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
        src_x = np.clip(np.rint((cols - a[0, 2]) / s), 0, image.shape[1] - 1).astype(int)
        src_y = np.clip(np.rint((rows - a[1, 2]) / s), 0, image.shape[0] - 1).astype(int)
        crop = image[src_y, src_x]
        r = np.hypot(cols - size / 2, rows - size / 2) / (size / 2)
        inside = r < 0.8
        uv = np.zeros((size, size, 2), np.float32)
        uv[..., 0] = np.where(inside, (cols + 0.5) / size, 0)
        uv[..., 1] = np.where(inside, 1 - (rows + 0.5) / size, 0)
        angle = np.arctan2(rows - size / 2, cols - size / 2)
        parts = np.where(inside, 1 + ((angle + np.pi) / (2 * np.pi) * 8).astype(int) % 8, 0).astype(np.uint8)
        lm = landmarks @ a[:, :2].T + a[:, 2]
        m = np.zeros((3, 4))
        m[:2, :2] = np.eye(2) * s
        m[2, 2] = -1.0  # the face looks at the camera (smaller depth)
        nme = float(np.std(landmarks) / (np.abs(landmarks).max() + 1) / 10)
        return CropLabels(crop, uv, parts, lm, a, m, np.array([1.0, 2.0, 3.0]),
                          np.arange(MODEL_SIZE, dtype=np.float64) * nme, nme)


def fake_labeller() -> FakeLabeller:
    return FakeLabeller()


def fake_template_facts(grid: int = 256) -> dict:
    g = 16
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(g, g, 3)).astype(np.float32)
    xyz[0, 0] = np.nan
    return {
        "landmark_uv": rng.uniform(size=(68, 2)),
        "uv_to_xyz": xyz,
        "eye_distance": 90.0,
        "part_uv": rng.integers(0, 9, size=(g, g)).astype(np.uint8),
        "template_id": "fake-face",
        "template_hash": "0" * 64,
        "units": "mm",
        "model_size": MODEL_SIZE,
    }


def fake_backend():
    from densereg_data.build.pipeline import Backend

    return Backend(fake_labeller, fake_template_facts)
