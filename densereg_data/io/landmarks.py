"""Landmark files: ``.pts`` and menpo ``.ljson`` readers and writers.

Convention: landmark files on disk
    ``.pts`` is 1-based: the line "1 1" is the centre of the top-left pixel and reads as (0, 0).
    ``.ljson`` (menpo, versions 1-3) stores (y, x) = (row, col), 0-based; rows are swapped on read
    and write. In memory every landmark set is ``(n, 2)`` float64 (x, y), 0-based, an integer
    coordinate is a pixel centre (see `densereg_data.conventions`).

Round trip: ``read_pts(write_pts(p)) == p`` bit for bit. The 1-based shift is done in exact decimal
arithmetic (the shortest decimal of each 0-based value, plus one), so reading a file and writing it
back also reproduces its numbers (up to trailing zeros, which carry no value).

Every input file is untrusted: parsing is line-based text and `json`; nothing is evaluated.
"""

from __future__ import annotations

import decimal
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densereg_data.conventions import LANDMARK_LIMIT_PX, N_LANDMARKS, PTS_ORIGIN
from densereg_data.errors import LandmarkFileError
from densereg_data.io.untrusted import read_capped

__all__ = ["Landmarks", "read_landmarks", "read_pts", "write_pts", "read_ljson", "write_ljson", "LANDMARK_SUFFIXES"]

#: File suffixes read by `read_landmarks`, in order of preference when both exist.
LANDMARK_SUFFIXES: tuple[str, ...] = (".pts", ".ljson")
#: Landmark files larger than this are refused unread (a 98-point .pts is about 2 kB).
MAX_LANDMARK_BYTES = 1 << 20

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_HEADER = re.compile(r"([A-Za-z_]+)\s*:\s*(\S*)\s*\Z")
#: Enough precision that adding PTS_ORIGIN to any finite double's shortest decimal is exact.
_EXACT = decimal.Context(prec=1200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_ORIGIN = decimal.Decimal(repr(PTS_ORIGIN))


@dataclass(frozen=True)
class Landmarks:
    """A validated landmark set.

    points: (n, 2) float64, (x, y) pixels, 0-based, finite, within `LANDMARK_LIMIT_PX`; read-only.
    source: where it came from (a file name, or "" for points made in memory).
    """

    points: np.ndarray
    source: str = ""
    n_expected: int | None = field(default=N_LANDMARKS, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        pts = np.array(self.points, dtype=np.float64, copy=True)
        if pts.ndim != 2 or pts.shape[1] != 2 or (self.n_expected is not None and pts.shape[0] != self.n_expected):
            n = self.n_expected if self.n_expected is not None else "n"
            raise LandmarkFileError(f"landmarks must be ({n}, 2), got {pts.shape}{where}")
        bad = ~np.isfinite(pts).all(axis=1)
        if bad.any():
            raise LandmarkFileError(f"landmark {int(np.argmax(bad))} is not finite ({pts[bad][0].tolist()}){where}")
        far = (np.abs(pts) > LANDMARK_LIMIT_PX).any(axis=1)
        if far.any():
            i = int(np.argmax(far))
            raise LandmarkFileError(
                f"landmark {i} ({pts[i].tolist()}) is farther than {LANDMARK_LIMIT_PX:g} pixels from the image origin{where}")
        pts.flags.writeable = False
        object.__setattr__(self, "points", pts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Landmarks):
            return NotImplemented
        return self.source == other.source and np.array_equal(self.points, other.points)

    __hash__ = None  # type: ignore[assignment]


def read_landmarks(path: str | os.PathLike, *, n_points: int | None = N_LANDMARKS) -> Landmarks:
    """Read a ``.pts`` or ``.ljson`` file (by suffix) into 0-based (x, y) `Landmarks`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".pts":
        return read_pts(path, n_points=n_points)
    if suffix == ".ljson":
        return read_ljson(path, n_points=n_points)
    raise LandmarkFileError(f"unknown landmark file type {suffix!r} (expected one of {LANDMARK_SUFFIXES}): {path}")


def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    raw = read_capped(p, "landmark file", LandmarkFileError, MAX_LANDMARK_BYTES)
    if not raw.strip():
        raise LandmarkFileError(f"landmark file is empty: {p}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LandmarkFileError(f"landmark file is not text (byte {exc.start} is not UTF-8): {p}") from None
    return text


def _parse_number(token: str, path: Path, line_no: int) -> float:
    """One 1-based .pts coordinate -> 0-based float64, exactly (decimal arithmetic, one rounding)."""
    if not _NUMBER.match(token):
        raise LandmarkFileError(f"{path}:{line_no}: expected a number, got {token!r}")
    value = float(_EXACT.subtract(decimal.Decimal(token), _ORIGIN))
    if not math.isfinite(value):
        raise LandmarkFileError(f"{path}:{line_no}: coordinate {token!r} is not finite")
    if abs(value) > LANDMARK_LIMIT_PX:
        raise LandmarkFileError(f"{path}:{line_no}: coordinate {token!r} is farther than {LANDMARK_LIMIT_PX:g} pixels from the image origin")
    return value


def read_pts(path: str | os.PathLike, *, n_points: int | None = N_LANDMARKS) -> Landmarks:
    """Read an ISO ``.pts`` file: optional ``version:``/``n_points:`` header lines, ``{``, one "x y" per
    line (1-based), ``}``. Any header spacing, CRLF or LF, trailing newline or not.

    Convention: "1 1" on disk is (0, 0) in memory (`PTS_ORIGIN` is subtracted).
    Returns `Landmarks` with points (n, 2) float64 (x, y). n_points: the count required (None: any).
    Raises `LandmarkFileError` naming the file and line on any problem.
    """
    p = Path(path)
    lines = _read_text(p).splitlines()
    declared: int | None = None
    i = 0
    while i < len(lines) and lines[i].strip() != "{":
        line = lines[i].strip()
        if line:
            m = _HEADER.match(line)
            if m is None:
                raise LandmarkFileError(f"{p}:{i + 1}: expected a header line or '{{', got {line[:40]!r}")
            key, value = m.group(1).lower(), m.group(2)
            if key == "n_points":
                if not value.isdigit():
                    raise LandmarkFileError(f"{p}:{i + 1}: n_points must be an integer, got {value!r}")
                declared = int(value)
        i += 1
    if i == len(lines):
        raise LandmarkFileError(f"{p}: missing '{{' before the points (no opening brace found)")
    rows: list[tuple[float, float]] = []
    closed = False
    for j in range(i + 1, len(lines)):
        line = lines[j].strip()
        if not line:
            continue
        if line == "}":
            closed = True
            trailing = [k for k in range(j + 1, len(lines)) if lines[k].strip()]
            if trailing:
                raise LandmarkFileError(f"{p}:{trailing[0] + 1}: unexpected text after the closing '}}'")
            break
        tokens = line.split()
        if len(tokens) != 2:
            raise LandmarkFileError(f"{p}:{j + 1}: expected two numbers 'x y', got {line[:60]!r}")
        rows.append((_parse_number(tokens[0], p, j + 1), _parse_number(tokens[1], p, j + 1)))
    if not closed:
        raise LandmarkFileError(f"{p}:{len(lines)}: file ends before the closing '}}' (truncated?) after {len(rows)} points")
    if declared is not None and declared != len(rows):
        raise LandmarkFileError(f"{p}: header says n_points {declared} but the file has {len(rows)} points")
    if n_points is not None and len(rows) != n_points:
        raise LandmarkFileError(f"landmarks must be ({n_points}, 2), got ({len(rows)}, 2) in {p}")
    points = np.array(rows, dtype=np.float64).reshape(-1, 2)
    return Landmarks(points, str(p), n_expected=n_points)


def _format_pts_number(value: float) -> str:
    """0-based float -> exact 1-based decimal text that `_parse_number` maps back to `value`."""
    return str(_EXACT.add(decimal.Decimal(repr(float(value))), _ORIGIN))


def write_pts(path: str | os.PathLike, landmarks: Landmarks | np.ndarray, *, trailing_newline: bool = True,
              header_spacing: str = " ") -> Path:
    """Write (n, 2) float64 (x, y) 0-based points as a 1-based ``.pts`` file; exact round trip.

    header_spacing: the text between ``n_points:`` and the count (300-W's originals use two spaces).
    """
    pts = landmarks.points if isinstance(landmarks, Landmarks) else Landmarks(landmarks, n_expected=None).points
    body = "\n".join(f"{_format_pts_number(x)} {_format_pts_number(y)}" for x, y in pts)
    text = f"version: 1\nn_points:{header_spacing}{len(pts)}\n{{\n{body}\n}}" + ("\n" if trailing_newline else "")
    p = Path(path)
    p.write_text(text, encoding="utf-8", newline="\n")
    return p


def _ljson_points(doc: object, p: Path, n_points: int | None) -> list:
    """The (y, x) rows of the landmark group to use from a parsed ljson document (v1, v2, v3)."""
    if not isinstance(doc, dict):
        raise LandmarkFileError(f"{p}: expected a JSON object at the top level, got {type(doc).__name__}")
    version = doc.get("version")
    try:
        if version == 3:
            groups = doc["groups"]
            if not isinstance(groups, dict) or not groups:
                raise LandmarkFileError(f"{p}: 'groups' must be a non-empty object")
            candidates = [(k, g["landmarks"]["points"]) for k, g in groups.items()]
            for key, pts in candidates:  # the group with the expected count, else the first
                if isinstance(pts, list) and (n_points is None or len(pts) == n_points):
                    return pts
            return candidates[0][1]
        if version == 2:
            return doc["landmarks"]["points"]
        if version == 1:
            return [q["point"] for g in doc["groups"] for q in g["landmarks"]]
    except (KeyError, TypeError):
        raise LandmarkFileError(f"{p}: ljson version {version} without the expected 'landmarks'/'points' keys") from None
    raise LandmarkFileError(f"{p}: unknown ljson version {version!r} (expected 1, 2 or 3)")


def read_ljson(path: str | os.PathLike, *, n_points: int | None = N_LANDMARKS) -> Landmarks:
    """Read a menpo ``.ljson`` file; its (y, x) rows become (x, y) points, 0-based in both.

    With several groups (v3), the first group holding n_points points is used.
    """
    p = Path(path)
    text = _read_text(p)
    try:
        doc = json.loads(text, parse_constant=lambda c: _reject_constant(c, p))
    except json.JSONDecodeError as exc:
        raise LandmarkFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except LandmarkFileError:
        raise
    except RecursionError:
        raise LandmarkFileError(f"{p}: JSON nested too deeply to be a landmark file") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise LandmarkFileError(f"{p}: not a usable JSON landmark file ({str(exc)[:80]})") from None
    rows = _ljson_points(doc, p, n_points)
    if not isinstance(rows, list):
        raise LandmarkFileError(f"{p}: 'points' must be a list of [y, x] pairs")
    out = np.empty((len(rows), 2), dtype=np.float64)
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2):
            raise LandmarkFileError(f"{p}: point {i} must be a [y, x] pair, got {str(row)[:40]}")
        for j, v in enumerate(row):
            if v is None:
                raise LandmarkFileError(f"{p}: point {i} is missing (null)")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise LandmarkFileError(f"{p}: point {i} has a non-number {str(v)[:40]!r}")
            if not (isinstance(v, float) or abs(v) <= LANDMARK_LIMIT_PX):  # huge ints overflow float64
                raise LandmarkFileError(f"{p}: point {i} is farther than {LANDMARK_LIMIT_PX:g} pixels from the origin")
        out[i] = (row[1], row[0])
    if n_points is not None and len(rows) != n_points:
        raise LandmarkFileError(f"landmarks must be ({n_points}, 2), got ({len(rows)}, 2) in {p}")
    return Landmarks(out, str(p), n_expected=n_points)


def _reject_constant(name: str, p: Path) -> float:
    raise LandmarkFileError(f"{p}: non-finite value {name} in landmark file")


def write_ljson(path: str | os.PathLike, landmarks: Landmarks | np.ndarray, *, group: str = "LJSON") -> Path:
    """Write (n, 2) (x, y) points as a menpo v3 ``.ljson`` ((y, x) rows, 0-based); exact round trip."""
    pts = landmarks.points if isinstance(landmarks, Landmarks) else Landmarks(landmarks, n_expected=None).points
    doc = {"version": 3, "groups": {group: {"labels": [], "landmarks": {
        "connectivity": [], "points": [[float(y), float(x)] for x, y in pts]}}}}
    p = Path(path)
    p.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    return p
