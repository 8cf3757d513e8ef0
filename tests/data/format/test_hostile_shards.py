"""Shards are untrusted files: every reader refuses what could read outside the shard folder or what
breaks the schema, with one line naming the file (issue "Hostile files and faults").

The hostile HDF5 files are made with h5py's own API (external storage, external and soft links,
virtual datasets); index.json is tampered with as an attacker would, sha256 and sizes kept consistent
so that only the hostile feature itself can be what a reader refuses.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from densereg_cli.data import main
from densereg_data.errors import ShardFormatError
from densereg_data.format import ShardIndex, open_shards, read_split, verify
from densereg_data.format.files import sha256_file


def _first_shard(root):
    return root / json.loads((root / "index.json").read_text())["shards"][0]["file"]


def _reindex(root, mutate_index=None):
    """Recompute bytes/sha256 of every shard in index.json (and config's sha), then apply `mutate_index`."""
    index = json.loads((root / "index.json").read_text())
    for rec in index["shards"]:
        p = root / rec["file"]
        if p.is_file():
            rec["bytes"], rec["sha256"] = p.stat().st_size, sha256_file(p)
    if mutate_index:
        mutate_index(index)
    (root / "index.json").write_text(json.dumps(index))


def _replace(shard, name, make):
    with h5py.File(shard, "a") as f:
        data = f[name][()]
        del f[name]
        make(f, name, data)


def external_storage(root, secret):
    def make(f, name, data):
        secret.write_bytes(b"SECRET!!" * (data.nbytes // 8 + 1))
        f.create_dataset(name, shape=data.shape, dtype=data.dtype, external=[(str(secret), 0, data.nbytes)])
    _replace(_first_shard(root), "parts", make)


def external_link_h5(root, secret):
    with h5py.File(secret, "w") as g:
        with h5py.File(_first_shard(root), "r") as f:
            g["parts"] = f["parts"][()]
    _replace(_first_shard(root), "parts", lambda f, n, d: f.__setitem__(n, h5py.ExternalLink(str(secret), "/parts")))


def external_link_other(root, secret):
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    _replace(_first_shard(root), "parts", lambda f, n, d: f.__setitem__(n, h5py.ExternalLink(str(secret), "/parts")))


def soft_link(root, secret):
    def make(f, name, data):
        f["hidden"] = data
        f[name] = h5py.SoftLink("/hidden")
    _replace(_first_shard(root), "parts", make)


def virtual(root, secret):
    def make(f, name, data):
        with h5py.File(secret, "w") as g:
            g["parts"] = data
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        layout[...] = h5py.VirtualSource(str(secret), "parts", shape=data.shape)
        f.create_virtual_dataset(name, layout)
    _replace(_first_shard(root), "parts", make)


HDF5_CASES = {"external storage": external_storage, "external link": external_link_h5,
              "external link to a non-HDF5 file": external_link_other, "soft link": soft_link,
              "virtual dataset": virtual}


def _set(key, value):
    return lambda index: index.__setitem__(key, value)


def _set_first(key, value):
    return lambda index: index["shards"][0].__setitem__(key, value)


INDEX_CASES = {
    "absolute file name": _set_first("file", "/etc/passwd"),
    "file name with ..": _set_first("file", "../elsewhere/train-00000.h5"),
    "k 0": _set("k", 0),
    "k ten": _set("k", "ten"),
    "shards null": _set("shards", None),
    "image_size string": _set("image_size", "256"),
}


@pytest.fixture
def shards(three_sample_shards, tmp_path):
    root = tmp_path / "hostile"
    shutil.copytree(three_sample_shards, root)
    return root


def _readers(root, tmp_path):
    """Every way densereg reads shards, as (name, callable)."""
    return [
        ("verify", lambda: verify(root)),
        ("open_shards", lambda: [open_shards(root)[i] for i in range(3)]),
        ("read_split", lambda: read_split(ShardIndex.open(root), "all")),
        ("cli info", lambda: main(["info", str(root)])),
        ("cli preview", lambda: main(["preview", str(root), "--out", str(tmp_path / "p.png")])),
        ("cli export", lambda: main(["export", str(root), "--out", str(tmp_path / "x")])),
    ]


def _assert_refused(fn, capsys, name, *needles):
    try:
        result = fn()
    except ShardFormatError as exc:
        msg = str(exc)
    else:
        err = capsys.readouterr().err.strip()
        assert result in (1, 2), f"{name} accepted the hostile shard (returned {result!r})"
        assert err.count("\n") == 0, f"{name} printed more than one line: {err}"
        msg = err
    for needle in needles:
        assert needle in msg, f"{name}: {msg!r} lacks {needle!r}"


@pytest.mark.parametrize("case", sorted(HDF5_CASES))
def test_hdf5_features_that_read_outside_the_shard_are_refused(shards, tmp_path, capsys, case):
    secret = tmp_path / "secret.bin"
    HDF5_CASES[case](shards, secret)
    _reindex(shards)
    for name, fn in _readers(shards, tmp_path):
        _assert_refused(fn, capsys, name, _first_shard(shards).name)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.png"))


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_bad_index_values_are_refused(shards, tmp_path, capsys, case):
    _reindex(shards, INDEX_CASES[case])
    for name, fn in _readers(shards, tmp_path):
        _assert_refused(fn, capsys, name, "index.json")


def test_deeply_nested_index(shards, tmp_path, capsys):
    (shards / "index.json").write_text("[" * 100_000)
    for name, fn in _readers(shards, tmp_path):
        _assert_refused(fn, capsys, name, "index.json")


@pytest.mark.parametrize("name,value,needle", [
    ("uv", np.nan, "uv of sample"), ("parts", 200, "parts of sample"), ("landmarks", np.inf, "landmarks of sample"),
])
def test_verify_checks_values(shards, capsys, name, value, needle):
    with h5py.File(_first_shard(shards), "a") as f:
        arr = f[name][0]
        arr.flat[len(arr.flat) // 2] = value
        f[name][0] = arr
    _reindex(shards)
    with pytest.raises(ShardFormatError, match=needle):
        verify(shards)
    assert verify(shards, values=False)["samples"] == 3  # the schema alone cannot see it


def test_verify_checks_skipped_jsonl(shards):
    (shards / "skipped.jsonl").write_text('{"source": "a"}\nnot json\n')
    with pytest.raises(ShardFormatError, match=r"skipped.jsonl:2: not a JSON line"):
        verify(shards)


def test_preview_and_export_never_write_into_a_shard_folder(shards, capsys):
    index = (shards / "index.json").read_bytes()
    assert main(["preview", str(shards), "--out", str(shards / "index.json")]) == 2
    assert "inside the shard folder" in capsys.readouterr().err
    assert main(["export", str(shards), "--out", str(shards / "x")]) == 2
    assert (shards / "index.json").read_bytes() == index and not (shards / "x").exists()
    verify(shards)
