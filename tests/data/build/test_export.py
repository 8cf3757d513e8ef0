"""DensePose export: IUV PNGs + COCO JSON that read back equal to the shards within 1/255."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densereg_cli.data import main
from densereg_data.errors import ShardFormatError
from densereg_data.build.export import export_shards, read_densepose_export
from densereg_data.format import open_shards


def test_densepose_round_trip(three_sample_shards, tmp_path):
    summary = export_shards(three_sample_shards, tmp_path / "dp", format="densepose", points=50)
    assert summary["samples"] == 3
    back = read_densepose_export(tmp_path / "dp")
    ds = open_shards(three_sample_shards)
    for i, b in enumerate(back):
        s = ds[i]
        assert b["source"] == s["source"]
        assert np.array_equal(b["image"], s["image"]) and np.array_equal(b["parts"], s["parts"])
        fg = s["parts"] > 0
        err = np.abs(b["uv"][fg] - s["uv"][fg].astype(np.float32))
        assert err.max() <= 0.5 / 255 + 1e-6
        assert np.all(b["uv"][~fg] == 0)
        assert len(b["rows"]) == 50 and np.all(fg[b["rows"], b["cols"]])
        assert np.array_equal(b["I"], s["parts"][b["rows"], b["cols"]])
        np.testing.assert_allclose(b["U"], s["uv"][b["rows"], b["cols"], 0], atol=1 / 255)
        np.testing.assert_allclose(b["V"], s["uv"][b["rows"], b["cols"], 1], atol=1 / 255)
    doc = json.loads((tmp_path / "dp" / "annotations.json").read_text())
    assert doc["categories"][0]["name"] == "face" and doc["annotations"][0]["bbox"] == [0, 0, 32, 32]
    assert max(max(a["dp_x"]) for a in doc["annotations"]) < 256


def test_export_is_deterministic_and_cli(three_sample_shards, tmp_path):
    assert main(["export", str(three_sample_shards), "--format", "densepose", "--out", str(tmp_path / "a")]) == 0
    export_shards(three_sample_shards, tmp_path / "b")
    assert (tmp_path / "a" / "annotations.json").read_text().split('"images"')[1] == \
        (tmp_path / "b" / "annotations.json").read_text().split('"images"')[1]


def test_unknown_format(three_sample_shards, tmp_path):
    with pytest.raises(ShardFormatError, match=r"unknown export format 'coco' \(valid: densepose\)"):
        export_shards(three_sample_shards, tmp_path, format="coco")
