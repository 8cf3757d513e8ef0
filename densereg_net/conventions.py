"""The few conventions the network needs, copied from `densereg_data.conventions` (never imported).

densereg_net must run with torch, h5py and numpy alone, so the constants it shares with the label
generator are repeated here; `tests/net/test_conventions.py` pins that both copies agree when
densereg_data is importable.

Convention: U-V
    (u, v) in [0, 1]; u runs left to right across a frontal face in the image (subject's right to
    subject's left), v upward. Background pixels have parts == 0 and U-V 0.

Convention: quantized regression (DenseReg)
    With K bins per axis, ``bin = min(floor(K u), K - 1) + 1`` (class 0 = background) and
    ``residual = K u - (bin - 1)`` in [0, 1]; decoding is ``u = (bin - 1 + residual) / K``.

Convention: parts
    0 = background, label i + 1 = ``PART_NAMES[i]``; "left"/"right" are the subject's. A horizontal
    flip swaps 1 <-> 2 and 3 <-> 4 (`PART_FLIP`), mirrors u (u -> 1 - u on the foreground) and
    permutes the 68 landmarks with `LANDMARK_FLIP`.

Convention: 2D points
    (n, 2) float, (x, y) = (column, row), 0-based, integers at pixel centres. ``.pts`` files are
    1-based: "1 1" reads as (0, 0) (`PTS_ORIGIN`).
"""

from __future__ import annotations

import torch

PTS_ORIGIN = 1.0
N_LANDMARKS = 68
DEFAULT_K = 10
PART_NAMES: tuple[str, ...] = (
    "right_brow", "left_brow", "right_eye", "left_eye", "nose", "upper_lip", "lower_lip", "rest_of_face",
)
N_PARTS = len(PART_NAMES) + 1  # with background
PART_FLIP: tuple[int, ...] = (0, 2, 1, 4, 3, 5, 6, 7, 8)
OUTER_EYE_CORNERS = (36, 45)
LANDMARK_FLIP: tuple[int, ...] = (
    tuple(range(16, -1, -1))  # jaw
    + tuple(range(26, 21, -1)) + tuple(range(21, 16, -1))  # brows
    + (27, 28, 29, 30)  # nose bridge
    + (35, 34, 33, 32, 31)  # nose base
    + (45, 44, 43, 42, 47, 46)  # right eye <- left eye
    + (39, 38, 37, 36, 41, 40)  # left eye <- right eye
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lips
    + (64, 63, 62, 61, 60, 67, 66, 65)  # inner lips
)


def encode_bins(u: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """U-V values in [0, 1] -> (bin in 1..K as int64, residual in [0, 1], same dtype as u).

    Convention: bin = min(floor(K u), K - 1) + 1, residual = K u - (bin - 1); u = 1 falls in bin K
    with residual 1. Background (bin 0) is the caller's business.
    """
    b = torch.clamp(torch.floor(u * k), max=k - 1).to(torch.int64) + 1
    return b, u * k - (b - 1).to(u.dtype)


def decode_bins(bins: torch.Tensor, residual: torch.Tensor, k: int) -> torch.Tensor:
    """(bin in 1..K, residual) -> U-V value: ``(bin - 1 + residual) / K``; inverse of `encode_bins`."""
    return ((bins - 1).to(residual.dtype) + residual) / k
