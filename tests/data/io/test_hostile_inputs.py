"""Hostile image and landmark files: one clear error naming the file, never a hang, a traceback or an
unbounded read (issue "Hostile files and faults")."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hostile import bigint_ljson, bomb_chunk_png, deep_ljson, dev_zero_link, fifo, huge_png, ppm

from densereg_data.errors import ImageFileError, LandmarkFileError
from densereg_data.io.images import read_image, read_image_reduced
from densereg_data.io.landmarks import read_landmarks


@pytest.mark.parametrize("maxval", [0, 99999999])
def test_ppm_with_bad_maxval(tmp_path, maxval):
    p = ppm(tmp_path / "bad.ppm", maxval)
    with pytest.raises(ImageFileError, match=r"bad\.ppm"):
        read_image(p)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt", b"iCCP"])
def test_png_with_a_decompression_bomb_chunk(tmp_path, kind):
    p = bomb_chunk_png(tmp_path / f"bomb-{kind.decode()}.png", kind)
    with pytest.raises(ImageFileError, match=rf"bomb-{kind.decode()}\.png"):
        read_image(p)


def test_small_png_of_huge_size_is_refused_from_its_header(tmp_path):
    import resource

    p = huge_png(tmp_path / "huge.png")
    assert p.stat().st_size < 400_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for read in (read_image, lambda q: read_image_reduced(q, min_scale=0.01)):
        with pytest.raises(ImageFileError, match=r"12000x12000 pixels .*huge\.png"):
            read(p)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing was decoded


def test_ljson_nested_deeply(tmp_path):
    with pytest.raises(LandmarkFileError, match=r"deep\.ljson: JSON nested too deeply"):
        read_landmarks(deep_ljson(tmp_path / "deep.ljson"))


def test_ljson_with_a_5000_digit_integer(tmp_path):
    with pytest.raises(LandmarkFileError, match=r"big\.ljson"):
        read_landmarks(bigint_ljson(tmp_path / "big.ljson"))


def test_fifo_named_pts_does_not_hang(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(LandmarkFileError, match=r"not a regular file .*face\.pts"):
        read_landmarks(fifo(tmp_path / "face.pts"))
    assert time.monotonic() - t0 < 5


def test_symlink_to_dev_zero_named_pts_is_not_read(tmp_path):
    with pytest.raises(LandmarkFileError, match=r"not a regular file .*zero\.pts"):
        read_landmarks(dev_zero_link(tmp_path / "zero.pts"))


def test_fifo_named_jpg_does_not_hang(tmp_path):
    with pytest.raises(ImageFileError, match=r"not a regular file .*face\.jpg"):
        read_image(fifo(tmp_path / "face.jpg"))


def test_oversized_landmark_file(tmp_path):
    p = tmp_path / "big.pts"
    p.write_text("version: 1\nn_points: 68\n{\n" + "1 1\n" * 400_000 + "}\n")
    with pytest.raises(LandmarkFileError, match=r"larger than .*big\.pts"):
        read_landmarks(p)


def test_good_files_still_read(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 6, 3), 7, np.uint8)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png").shape == (8, 6, 3)
