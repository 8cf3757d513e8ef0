"""Checkpoints are untrusted files: one flat HDF5 file, never a pickle; every hostile or inconsistent
one is refused with one line naming it (issue "Hostile files and faults")."""

import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from net_fakes import one_line_error, one_thread, run, write_shards  # noqa: F401  (fixtures)
from PIL import Image

from densereg_data.errors import CheckpointError
from densereg_net.checkpoint import load_checkpoint
from densereg_net.checkpoint_schema import META_ATTR, META_KEYS, TENSOR_NAME

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkpoint_is_flat_hdf5_with_json_metadata(run):
    with h5py.File(run / "run" / "last.pt", "r") as f:
        names = list(f.keys())
        assert all(isinstance(f[n], h5py.Dataset) for n in names) and set(f.attrs) == {META_ATTR}
        meta = json.loads(f.attrs[META_ATTR])
    assert all(TENSOR_NAME.fullmatch(n) for n in names)
    assert "model:body.stem.0.0.weight" in names and "optimizer:state:0:exp_avg" in names and "rng:torch" in names
    assert sorted(meta) == sorted(META_KEYS) and meta["model_config"] == {"head": "quantized", "k": 10, "width": 8,
                                                                        "input_norm": "per_image"}
    assert meta["crop"] == {"margin": 0.25, "size": 32} and meta["format"] == "densereg-net checkpoint"
    assert (run / "run" / "last.pt").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5, not a zip or a pickle


def test_the_network_never_unpickles():
    sources = [*(ROOT / "densereg_net").glob("*.py"), *(ROOT / "cli").glob("net*.py")]
    assert sources and not [p.name for p in sources if "torch.load(" in p.read_text() or "import pickle" in p.read_text()]


def _copy(run, tmp_path) -> Path:
    path = tmp_path / "c.pt"
    shutil.copy(run / "run" / "best.pt", path)
    return path


def _meta(**changes):
    def edit(path):
        with h5py.File(path, "a") as f:
            meta = json.loads(f.attrs[META_ATTR])
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(meta.get(key), dict):
                    meta[key].update(value)
                else:
                    meta[key] = value
            f.attrs[META_ATTR] = json.dumps(meta)
    return edit


def _replace(name, make):
    """Replace dataset `name` with what `make(f, name, data, outside)` puts there (outside: a path beside)."""
    def edit(path):
        with h5py.File(path, "a") as f:
            data = f[name][()]
            del f[name]
            make(f, name, data, path.with_name("outside"))
    return edit


def _external_link(f, name, data, outside):
    with h5py.File(outside, "w") as g:
        g["w"] = data
    f[name] = h5py.ExternalLink(str(outside), "/w")


def _external_storage(f, name, data, outside):
    outside.write_bytes(data.tobytes())
    f.create_dataset(name, data.shape, data.dtype, external=[(str(outside), 0, data.nbytes)])


def _virtual(f, name, data, outside):
    with h5py.File(outside, "w") as g:
        g["w"] = data
    layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
    layout[...] = h5py.VirtualSource(str(outside), "w", shape=data.shape)
    f.create_virtual_dataset(name, layout)


def _write(data: bytes):
    return lambda path: path.write_bytes(data)


def _torch_save(path):
    torch.save({"model": {}, "model_config": {"head": "quantized", "k": 10, "width": 8}}, path)


def _nan_weight(path):
    with h5py.File(path, "a") as f:
        f["model:body.stem.0.0.weight"][0, 0, 0, 0] = np.nan


def _huge_optimizer_slot(path):
    with h5py.File(path, "a") as f:
        del f["optimizer:state:0:exp_avg"]
        f.create_dataset("optimizer:state:0:exp_avg", (1 << 20, 1 << 20), "f4", chunks=(1, 1024))


def _extra(make):
    def edit(path):
        with h5py.File(path, "a") as f:
            make(f)
    return edit


STEM = "model:body.stem.0.0.weight"
CASES = {
    "0 bytes": (_write(b""), "empty file (0 bytes), not a densereg HDF5 checkpoint"),
    "torch.save pickle": (_torch_save, "not a densereg HDF5 checkpoint (a torch.save pickle"),
    "plain pickle": (_write(pickle.dumps({"model": {}}, protocol=2)), "not a densereg HDF5 checkpoint (a torch.save pickle"),
    "random bytes": (_write(b"\x00" * 100), "not a densereg HDF5 checkpoint"),
    "width 16 config on width 8 weights": (_meta(model_config={"width": 16}, config={"width": 16}),
                                           f"{STEM} is (8, 3, 3, 3) float32, but the model of model_config"),
    "config width disagrees with model_config": (_meta(config={"width": 16}), "config width 16 disagrees with model_config width 8"),
    "model_config null": (_meta(model_config=None), "model_config must be an object {head, k, width[, input_norm]}, got null"),
    "unknown input_norm": (_meta(model_config={"input_norm": "evil"}),
                           "model_config input_norm must be one of imagenet, per_image, got 'evil'"),
    "config input_norm disagrees": (_meta(config={"input_norm": "imagenet"}),
                                    "config input_norm 'imagenet' disagrees with model_config input_norm 'per_image'"),
    "unknown head": (_meta(model_config={"head": "evil"}), "model_config head must be one of"),
    "width 10**9": (_meta(model_config={"width": 10**9}), "model_config width must be an integer in 1..256"),
    "k disagrees": (_meta(k=12), "k 12 disagrees with model_config k 10"),
    "readout_uv short": (_meta(template={"readout_uv": [[0.5, 0.5]]}), "template must be null or {landmark_uv[, readout_uv]: 68"),
    "readout_uv NaN": (_meta(template={"readout_uv": [[0.5, 0.5]] * 67 + [[None, 0.5]]}), "template must be null or"),
    "crop size 1e9": (_meta(crop={"size": 1e9}), "crop size must be an integer in 16..4096, got 1000000000.0"),
    "crop margin 5": (_meta(crop={"margin": 5}), "crop margin must be a number in [0, 4], got 5"),
    "bad config value": (_meta(config={"epochs": "3"}), "config: epochs must be int, got str '3'"),
    "mean_landmarks short": (_meta(mean_landmarks=[[0, 0]]), "mean_landmarks must be 68 finite (x, y) pairs"),
    "NaN in the JSON": (lambda p: _set_raw(p, '{"format": NaN}'), "not valid JSON (NaN is not JSON)"),
    "not JSON": (lambda p: _set_raw(p, "{"), "attribute is not valid JSON"),
    "no metadata": (_extra(lambda f: f.attrs.__delitem__(META_ATTR)), "no densereg_checkpoint attribute"),
    "external link": (_replace(STEM, _external_link), f"{STEM} is a ExternalLink, not a dataset stored in the file"),
    "external storage": (_replace(STEM, _external_storage), f"{STEM} uses external storage"),
    "virtual dataset": (_replace(STEM, _virtual), f"{STEM} is a virtual dataset"),
    "a group": (_extra(lambda f: f.create_group("g")), "g is not a dataset"),
    "unexpected dataset": (_extra(lambda f: f.create_dataset("evil", data=[1])), "unexpected dataset 'evil'"),
    "missing weight": (_extra(lambda f: f.__delitem__(STEM)), f"no tensor {STEM} (1 missing)"),
    "NaN weight": (_nan_weight, f"{STEM} holds NaN or infinite values"),
    "huge optimizer slot": (_huge_optimizer_slot, "optimizer:state:0:exp_avg has shape (1048576, 1048576), no model tensor's"),
}


def _set_raw(path, text):
    with h5py.File(path, "a") as f:
        f.attrs[META_ATTR] = text


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_or_inconsistent_checkpoints_are_one_line(run, tmp_path, capsys, case):
    make, needle = CASES[case]
    path = _copy(run, tmp_path)
    make(path)
    one_line_error(capsys, ["eval", path, run / "shards"], str(path), needle)
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)


def test_a_checkpoint_from_before_input_norm_reads_as_imagenet(run, tmp_path, capsys):
    """model_config and config written without input_norm (the first checkpoints, all trained on fixed
    ImageNet statistics) load as an "imagenet" model with the same weights."""
    from densereg_net.checkpoint import model_from_checkpoint
    path = _copy(run, tmp_path)
    with h5py.File(path, "a") as f:
        meta = json.loads(f.attrs[META_ATTR])
        del meta["model_config"]["input_norm"], meta["config"]["input_norm"]
        f.attrs[META_ATTR] = json.dumps(meta)
    old, new = model_from_checkpoint(load_checkpoint(path)), model_from_checkpoint(load_checkpoint(run / "run" / "best.pt"))
    assert new.config["input_norm"] == "per_image" and old.config == {**new.config, "input_norm": "imagenet"}
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))


def test_the_calibrated_readout_travels_in_the_checkpoint(run, tmp_path):
    """train writes the read-out U-V calibrated on its training faces; Predictor and eval read out at it;
    a checkpoint without it (older) reads out at the template's landmark U-V."""
    from densereg_data.format import ShardIndex
    from densereg_net.data import ShardDataset
    from densereg_net.evaluate import evaluate
    from densereg_net.metrics import calibrate_readout
    from densereg_net.predict import Predictor
    ckpt = load_checkpoint(run / "run" / "best.pt")
    template = ckpt["template"]
    index = ShardIndex.open(run / "shards")
    expected = calibrate_readout(ShardDataset(index, "train", views=False), np.asarray(template["landmark_uv"]))
    assert np.allclose(template["readout_uv"], expected) and not np.allclose(expected, template["landmark_uv"])
    assert np.allclose(Predictor(run / "run" / "best.pt", "cpu").landmark_uv.numpy(), expected)
    path = _copy(run, tmp_path)
    with h5py.File(path, "a") as f:
        meta = json.loads(f.attrs[META_ATTR])
        del meta["template"]["readout_uv"]
        f.attrs[META_ATTR] = json.dumps(meta)
    assert np.allclose(Predictor(path, "cpu").landmark_uv.numpy(), template["landmark_uv"])
    new, old = evaluate(run / "run" / "best.pt", run / "shards", "val"), evaluate(path, run / "shards", "val")
    assert new["per_image"]["nme"] != old["per_image"]["nme"]


def test_a_hostile_last_pt_stops_resume_and_predict_too(run, tmp_path, capsys):
    shutil.copytree(run / "run", tmp_path / "r")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "face.png")
    _replace(STEM, _external_link)(tmp_path / "r" / "last.pt")
    one_line_error(capsys, ["train", run / "shards", "--out", tmp_path / "r", "--resume", "--width", "8"],
                   "last.pt: ", "ExternalLink")
    _meta(crop={"size": 1e9})(tmp_path / "r" / "best.pt")
    one_line_error(capsys, ["predict", tmp_path / "r" / "best.pt", tmp_path / "face.png", "--bbox", "0,0,9,9",
                            "--out", tmp_path / "o"], "best.pt: crop size must be an integer in 16..4096")


@pytest.mark.parametrize("part, value, needle", [
    ("optimizer", {"param_groups": [{"lr": "fast"}]}, "optimizer parameter groups do not match"),
    ("optimizer_lr", "fast", "optimizer param_groups.lr must be like"),
    ("scheduler", {"optimizer": "x"}, "scheduler must have the keys"),
])
def test_resume_checks_optimizer_and_scheduler_state(run, tmp_path, capsys, part, value, needle):
    shutil.copytree(run / "run", tmp_path / "r")
    last = tmp_path / "r" / "last.pt"
    if part == "optimizer_lr":
        with h5py.File(last, "a") as f:
            meta = json.loads(f.attrs[META_ATTR])
            meta["optimizer"]["param_groups"][0]["lr"] = value
            f.attrs[META_ATTR] = json.dumps(meta)
    else:
        _meta(**{part: value})(last)
    one_line_error(capsys, ["train", run / "shards", "--out", tmp_path / "r", "--resume", "--width", "8"],
                   "last.pt: ", needle)


def test_an_existing_run_is_never_overwritten_without_resume(run, tmp_path, capsys):
    shutil.copytree(run / "run", tmp_path / "r")
    before = {n: (tmp_path / "r" / n).read_bytes() for n in ("best.pt", "last.pt")}
    one_line_error(capsys, ["train", run / "shards", "--out", tmp_path / "r", "--width", "8"],
                   f"--out {tmp_path / 'r'} already holds a run (last.pt, best.pt): continue it with --resume, "
                   "or choose another --out")
    (tmp_path / "r" / "last.pt").unlink()
    one_line_error(capsys, ["train", run / "shards", "--out", tmp_path / "r", "--resume", "--width", "8"],
                   "holds best.pt but no last.pt to resume from")
    assert (tmp_path / "r" / "best.pt").read_bytes() == before["best.pt"]


def test_resume_on_other_shards_says_so(run, tmp_path, capsys):
    shutil.copytree(run / "run", tmp_path / "r")
    other = write_shards(tmp_path / "other", {"train": 6, "val": 2}, seed=5)  # same k and parts, other samples
    one_line_error(capsys, ["train", other, "--out", tmp_path / "r", "--resume", "--width", "8"],
                   "last.pt was trained on other shards (index.json sha256", "resume on the same shards")


def test_train_never_writes_into_its_shards(run, capsys):
    one_line_error(capsys, ["train", run / "shards", "--out", run / "shards" / "r", "--width", "8"],
                   "is inside the shard folder")
