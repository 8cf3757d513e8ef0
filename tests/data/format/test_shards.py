"""Shards: write -> read is exact, the reader's indexing, verify catches corruption, info summarises."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import densereg_data
from densereg_data.errors import ShapeError, ShardFormatError
from densereg_data.format.verify import format_info, info, verify
from densereg_data.format import SCHEMA, ShardIndex, ShardWriter, open_shards
from densereg_data.format.files import sha256_file


def _sample(rng, i, size=8, c=3):
    return {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "uv": rng.uniform(size=(size, size, 2)).astype(np.float16),
        "parts": rng.integers(0, 9, (size, size), dtype=np.uint8),
        "landmarks": rng.normal(size=(68, 2)).astype(np.float32),
        "crop_from_image": rng.normal(size=(2, 3)),
        "source": f"dir/ü face {i}.png",
        "source_size": np.array([100 + i, 200], np.int32),
        "fit_nme": np.float32(0.01 * i),
        "crop_from_template": rng.normal(size=(3, 4)),
        "pose": rng.normal(size=3).astype(np.float32),
        "coefficients": rng.normal(size=c).astype(np.float32),
        "expression": rng.uniform(size=2).astype(np.float32),
        "landmark_state": rng.integers(1, 3, size=68).astype(np.uint8),
        "view_delta": rng.uniform(-90, 90, size=2).astype(np.float32),
    }


@pytest.mark.parametrize("compression", ["lzf", "none"])
def test_writer_round_trip_is_exact(tmp_path, compression):
    rng = np.random.default_rng(0)
    samples = [_sample(rng, i) for i in range(3)]
    with ShardWriter(tmp_path / "train-00000.h5", "train", size=8, model_size=3, capacity=5,
                     compression=compression, expression_size=2) as w:
        for s in samples:
            w.append(s)
        rec = w.close(attrs={"note": "x"})
    assert rec.samples == 3 and rec.bytes == (tmp_path / "train-00000.h5").stat().st_size and len(rec.sha256) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["train-00000.h5"]  # no temporary left
    with h5py.File(tmp_path / "train-00000.h5", "r") as f:
        assert f.attrs["format"] == "densereg-shards" and f.attrs["format_version"] == 3 and f.attrs["split"] == "train"
        for name in SCHEMA:
            assert f[name].shape[0] == 3 and f[name].chunks[0] == 1
            assert f[name].compression == ("lzf" if compression == "lzf" or name not in ("image", "uv", "parts") else None)
        assert f["uv"].shuffle == (compression == "lzf") and f["landmarks"].shuffle and not f["image"].shuffle
        for i, s in enumerate(samples):
            for name in SCHEMA:
                got = f[name][i]
                if name == "source":
                    assert got.decode("utf-8") == s["source"]
                else:
                    assert got.dtype == np.dtype(SCHEMA[name][0]) and np.array_equal(got, s[name]), name


def test_writer_abort_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match=r"image must be \(8, 8, 3\), got \(4, 4, 3\)"):
        with ShardWriter(tmp_path / "train-00000.h5", "train", size=8, model_size=3, capacity=2) as w:
            bad = _sample(rng, 0)
            bad["image"] = bad["image"][:4, :4]
            w.append(bad)
    assert list(tmp_path.iterdir()) == []


def test_three_sample_shards_read(three_sample_shards):
    ds = densereg_data.open_shards(three_sample_shards)
    index = ShardIndex.open(three_sample_shards).raw
    assert len(ds) == 3 == sum(index["splits"].values())
    assert index["split_aliases"] == {"full": ["train", "val"]}
    s = ds[0]
    assert set(s) == set(SCHEMA)
    assert s["image"].shape == (32, 32, 3) and s["uv"].dtype == np.float16 and s["parts"].shape == (32, 32)
    assert isinstance(s["source"], str) and s["landmarks"].shape == (68, 2)
    assert ds[-1]["source"] == ds[2]["source"]
    batch = ds[0:3]
    assert batch["image"].shape == (3, 32, 32, 3) and batch["source"] == [ds[i]["source"] for i in range(3)]
    assert np.array_equal(batch["uv"][1], ds[1]["uv"])
    assert [x["source"] for x in ds] == batch["source"]
    assert ds[::2]["image"].shape[0] == 2
    with pytest.raises(IndexError):
        ds[3]
    full = open_shards(three_sample_shards, "full")
    assert len(full) == 3
    assert len(open_shards(three_sample_shards, "train")) + len(open_shards(three_sample_shards, "val")) == 3
    with pytest.raises(ShardFormatError, match=r"no split 'test' in \S*shards3 \(valid: all, train, val, full\)"):
        open_shards(three_sample_shards, "test")
    import pickle

    clone = pickle.loads(pickle.dumps(ds))
    assert clone[1]["source"] == ds[1]["source"]


def test_verify_ok_and_info(three_sample_shards):
    assert verify(three_sample_shards)["samples"] == 3
    summary = info(three_sample_shards)
    assert summary["samples"] == 3 and summary["splits"] == {"train": 2, "val": 1}
    assert summary["skipped"]["count"] == 0 and summary["fit_nme"]["max"] >= summary["fit_nme"]["median"]
    assert summary["bytes_per_sample"] > 0 and summary["template"]["id"] == "fake-face"
    assert "train 2, val 1" in format_info(summary)


def test_verify_names_flipped_byte(three_sample_shards):
    shard = three_sample_shards / "train-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=r"train-00000\.h5: sha256 mismatch"):
        verify(three_sample_shards)


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda d: (d / "val-00000.h5").unlink(), r"val-00000\.h5: listed in index.json but missing"),
        (lambda d: (d / "config.json").write_text("{}"), r"config.json: sha256 does not match"),
        (lambda d: (d / "index.json").write_text("{"), r"index.json: unreadable index"),
        (lambda d: (d / "train-00009.h5").write_bytes(b""), r"train-00009\.h5: shard file not listed"),
        (lambda d: (d / "template.h5").write_bytes(b"junk"), r"template.h5: not a readable HDF5 file"),
    ],
)
def test_verify_names_first_bad_file(three_sample_shards, damage, pattern):
    damage(three_sample_shards)
    with pytest.raises(ShardFormatError, match=pattern):
        verify(three_sample_shards)


def test_verify_schema_mismatch(three_sample_shards):
    index = json.loads((three_sample_shards / "index.json").read_text())
    path = three_sample_shards / "val-00000.h5"
    with h5py.File(path, "a") as f:
        del f["pose"]
        f.create_dataset("pose", data=np.zeros((1, 3), np.float64), chunks=(1, 3), compression="lzf")
    from densereg_data.format import sha256_file

    for rec in index["shards"]:  # fix the checksums so the schema check is what fails
        if rec["file"] == path.name:
            rec["sha256"], rec["bytes"] = sha256_file(path), path.stat().st_size
    (three_sample_shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardFormatError, match=r"val-00000\.h5: pose has dtype float64, expected float32"):
        verify(three_sample_shards)


def test_version_1_shards_still_read_and_verify(three_sample_shards):
    """Version 1 had no expression coefficients: its files differ only by the version number."""
    index = json.loads((three_sample_shards / "index.json").read_text())
    index["format_version"] = 1
    for path in [three_sample_shards / "template.h5", *sorted(three_sample_shards.glob("*-0000*.h5"))]:
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 1
            assert "expression" not in f and "expression_size" not in f.attrs
    for rec in index["shards"]:
        path = three_sample_shards / rec["file"]
        rec["sha256"], rec["bytes"] = sha256_file(path), path.stat().st_size
    (three_sample_shards / "index.json").write_text(json.dumps(index))
    assert verify(three_sample_shards)["samples"] == 3
    assert len(open_shards(three_sample_shards)) == 3


def test_reader_refuses_other_versions(three_sample_shards):
    index = json.loads((three_sample_shards / "index.json").read_text())
    index["format_version"] = 4
    (three_sample_shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardFormatError, match="format_version 4, this reader reads 1, 2, 3"):
        open_shards(three_sample_shards)
    with pytest.raises(ShardFormatError, match="not a shard directory"):
        open_shards(three_sample_shards / "nope")


def test_importing_densereg_data_stays_light():
    import subprocess
    import sys

    code = ("import sys, densereg_data; densereg_data.open_shards; "
            "bad = [m for m in ('menpo', 'numba', 'torch', 'scipy') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
