"""The dense fit (`densereg_net.dense_fit`): the shards' face model fitted to a dense U-V map.

Light tests use a toy face model written with numpy (a dome with three deformation fields, its U-V
map rendered exactly by inverting the camera with Newton steps), so they run without the heavy stack;
the tests marked by `pytest.importorskip("menpo3d")` fit U-V maps rendered by the label generator
itself and skip cleanly without it. Template.h5 and checkpoints carrying a bad face model are refused
with one line.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from net_fakes import MODEL_SIZE, one_thread, template_landmark_uv, write_shards  # noqa: F401  (fixtures)

from densereg_data.conventions import JAW, OUTER_EYE_CORNERS
from densereg_data.errors import CheckpointError, FitError, ShapeError, ShardFormatError
from densereg_data.format import TEMPLATE, write_template
from densereg_data.format.template_facts import TemplateFacts, read_template_facts
from densereg_data.geometry.camera import FLIP_YZ, Camera, rotation_angle, rotation_from_pose
from densereg_net.checkpoint import load_checkpoint
from densereg_net.dense_fit import (NO_FACE_MODEL, dense_confidence, dense_landmarks, fit_dense, fitted_points,
                                    head_outputs)

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[2] / "shared" / "data" / "300w-dev"
G = 65  # the toy's U-V grid
CONTOUR = [i for i in JAW if i != 8]


# ----------------------------------------------------------------------------------------------------
# a toy face model, numpy only


def toy_facts(axes: int = 3, k: int = 3) -> dict:
    """template.h5's dict of a toy face: a dome (mm, looking along +z) over the U-V disc of radius^2 0.2
    around (0.5, 0.5), the 68 landmarks at `template_landmark_uv`, and `k` smooth deformation fields: vector
    ones (axes 3; model_size = k) or scalar ones moving each axis (axes 1; model_size = 3 k)."""
    g = np.linspace(0, 1, G)
    u, v = np.meshgrid(g, 1 - g)  # [row, col]: u = col / (G - 1), v = 1 - row / (G - 1)
    du, dv = u - 0.5, v - 0.5
    off = du**2 + dv**2 > 0.2
    xyz = np.stack([100 * du, 120 * dv, 40 * (1 - 4 * (du**2 + dv**2))], -1)
    bump = np.exp(-(du**2 + (dv + 0.05) ** 2) / 0.02)
    if axes == 3:
        fields = [np.stack([0 * du, 0 * du, 8 * bump], -1), np.stack([20 * du * dv, 0 * du, 0 * du], -1),
                  np.stack([0 * du, 15 * du**2, 5 * dv], -1), np.stack([10 * dv**2, 0 * du, 6 * du * dv], -1)][:k]
    else:
        fields = [bump, 4 * du * dv, 3 * du**2 - dv, 2 * dv**2][:k]
    basis = np.stack(fields, -1).reshape(G, G, axes, k)
    xyz[off], basis[off] = np.nan, np.nan
    lm_uv = template_landmark_uv()
    facts = {"landmark_uv": lm_uv, "uv_to_xyz": xyz.astype(np.float32), "part_uv": np.where(off, 0, 8).astype(np.uint8),
             "template_id": "toy", "template_hash": "0" * 64, "units": "mm", "model_size": k * (3 // axes),
             "expression_size": 0, "uv_to_basis": basis.astype(np.float32)}
    flat = TemplateFacts(lm_uv, facts["uv_to_xyz"], 1.0, facts["part_uv"])
    # each sliding jaw point's row: itself first, then points on its line through the centre, out and in
    rows = [lm_uv[i] + t * (np.array([0.5, 0.5]) - lm_uv[i]) for i in CONTOUR for t in (0, -0.15, 0.1, 0.2, 0.3, 0.4)]
    lm_mean = flat.xyz(lm_uv)
    outward = lm_mean[CONTOUR] - lm_mean[30]
    outward[:, 2] = 0
    facts.update(
        eye_distance=float(np.linalg.norm(lm_mean[36] - lm_mean[45])),
        basis_sd=np.array([3.0, 2.0, 1.5, 1.0][:k]), basis_to_model=np.eye(k),
        basis_constraints=np.zeros((0, k, 3)) if axes == 3 else TOY_CONSTRAINT[:, :k],
        landmark_mean=lm_mean, landmark_basis=fill_lookup(basis, lm_uv),
        contour_mean=flat.xyz(np.array(rows)), contour_basis=fill_lookup(basis, np.array(rows)),
        contour_row=np.repeat(np.arange(len(CONTOUR)), 6), contour_landmarks=np.array(CONTOUR),
        contour_outward=outward / np.linalg.norm(outward, axis=1, keepdims=True))
    return facts


#: the scalar toy's constraint on its coefficients b (K, 3): sum_k row[k] . b[k] = 0
TOY_CONSTRAINT = np.array([[[0.5, 1.0, 2.0], [-1.0, 0.5, 1.0], [1.0, 0.0, -1.5], [0.0, 1.0, 0.0]]])


def fill_lookup(basis, uv):
    """The basis at U-V points by `ModelFacts.basis` (the one lookup), for building the toy."""
    from densereg_data.format.template_facts import fill_off_face, uv_lookup

    b = basis.shape[0]
    return uv_lookup(fill_off_face(basis.reshape(b, b, -1)), uv).reshape(len(uv), *basis.shape[2:])


def render(facts: TemplateFacts, b, camera: Camera, size: int = 96):
    """The exact U-V map (S, S, 2) and foreground (S, S) of shape b seen by `camera`: each pixel's U-V
    solved by Newton steps on the model's own lookups (the dome shows no fold at these poses)."""
    m = facts.model
    rows, cols = np.mgrid[0:size, 0:size]
    x = np.stack([cols.ravel(), rows.ravel()], 1).astype(np.float64)

    def image(uv):
        return camera.project(facts.xyz(uv) + m.displace(m.basis(uv).astype(np.float64), b))[:, :2]

    affine = np.linalg.lstsq(np.c_[np.full(3, 1.0), [[0.5, 0.5], [0.6, 0.5], [0.5, 0.6]]],
                             image(np.array([[0.5, 0.5], [0.6, 0.5], [0.5, 0.6]])), rcond=None)[0]
    uv = np.linalg.lstsq(affine[1:].T, (x - affine[0]).T, rcond=None)[0].T
    for _ in range(20):
        f0 = image(uv)
        jac = np.stack([(image(uv + d) - f0) / 1e-5 for d in ([1e-5, 0], [0, 1e-5])], -1)  # (P, 2, 2)
        uv = np.clip(uv - np.linalg.solve(jac + 1e-6 * np.eye(2), (f0 - x)[..., None])[..., 0], 0, 1)
    ok = (np.linalg.norm(image(uv) - x, axis=1) < 1e-6) & (((uv - 0.5) ** 2).sum(1) <= 0.18)
    return np.where(ok[:, None], uv, 0).reshape(size, size, 2).astype(np.float32), ok.reshape(size, size)


def toy_face(axes=3, pose=(12.0, -8.0, 6.0), size=96):
    facts = TemplateFacts.from_dict(toy_facts(axes))
    b = np.array([1.5, -2.0, 1.0]) if axes == 3 else np.array([[1.5, -1.0, 0.5], [-1.0, 2.0, 0.0], [0.5, 0.8, -0.7]])
    if axes == 1:  # a shape that meets the constraint
        row = TOY_CONSTRAINT[0, :3]
        b = b - row * (row * b).sum() / (row**2).sum()
    camera = Camera("orthographic", FLIP_YZ @ rotation_from_pose(*pose), np.array([47.0, 49.0, 0.0]), scale=0.8)
    uv, fg = render(facts, b, camera, size)
    return facts, b, camera, uv, fg


def with_outliers(uv, fg, fraction, seed=0):
    """`uv` with random U-V on a random `fraction` of the foreground pixels."""
    rng = np.random.default_rng(seed)
    out = uv.copy()
    r, c = np.nonzero(fg)
    k = rng.choice(len(r), int(fraction * len(r)), replace=False)
    out[r[k], c[k]] = rng.uniform(0, 1, (len(k), 2))
    return out


@pytest.mark.parametrize("axes", [3, 1])
def test_a_perfect_map_gives_back_the_pose_shape_and_landmarks(axes):
    facts, b, camera, uv, fg = toy_face(axes)
    assert fg.sum() > 3000
    fit = fit_dense(uv, fg, None, facts)
    truth = dense_landmarks(facts, b, camera)
    assert rotation_angle(fit.camera.rotation, camera.rotation) < 0.01
    assert abs(fit.camera.scale / camera.scale - 1) < 1e-4
    seen = (lambda c: c) if axes == 3 else (lambda c: (c @ camera.rotation.T)[:, :2])  # depth is not seen
    assert np.abs(seen(fit.coefficients) - seen(b)).max() < 0.01
    assert np.linalg.norm(fit.landmarks - truth, axis=1).max() < 0.01
    assert fit.inlier_fraction > 0.99 and fit.residual_median < 0.01 and fit.pixels <= 800
    if axes == 1:
        assert abs(np.einsum("skc,kc->s", facts.model.basis_constraints, fit.coefficients)).max() < 1e-9
    identity, expression = facts.model.model_coefficients(fit.coefficients)
    assert identity.shape == (3 * (3 // axes),) and expression.shape == (0,)
    surface = fitted_points(fit, facts)  # the fitted shape on the basis grid's face cells, crop (x, y, depth)
    assert surface.shape == (np.isfinite(facts.model.uv_to_basis[:, :, 0, 0]).sum(), 3)
    assert np.abs(fitted_points(fit, facts, facts.landmark_uv[17:])[:, :2] - truth[17:]).max() < 0.01


def test_thirty_percent_outliers_degrade_gracefully():
    """Random U-V on 30% of the face pixels: landmarks within 0.25 px (a least-squares fit without the
    robust weights misses by pixels), pose within 0.2 degrees, the outliers found."""
    facts, b, camera, uv, fg = toy_face()
    fit = fit_dense(with_outliers(uv, fg, 0.3), fg, None, facts)
    truth = dense_landmarks(facts, b, camera)
    assert np.linalg.norm(fit.landmarks - truth, axis=1).max() < 0.25
    assert rotation_angle(fit.camera.rotation, camera.rotation) < 0.2
    assert 0.6 < fit.inlier_fraction < 0.8


def test_confidence_weights_the_pixels():
    """Outliers given confidence 0 are ignored: the fit is the clean one."""
    facts, _, _, uv, fg = toy_face()
    bad = with_outliers(uv, fg, 0.5, seed=1)
    conf = np.where((bad == uv).all(axis=2), 1.0, 0.0)
    clean = fit_dense(uv, fg, None, facts)
    weighted = fit_dense(bad, fg, conf, facts)
    assert np.abs(weighted.landmarks - clean.landmarks).max() < 0.05
    with pytest.raises(ShapeError, match="confidence must lie in"):
        fit_dense(uv, fg, np.full(fg.shape, 2.0), facts)


def test_the_jaw_points_follow_the_silhouette_rule():
    """A turned face's far jaw point is its contour row's candidate furthest out in the image, not the
    landmark's own surface point."""
    facts, b, camera, uv, fg = toy_face(pose=(25.0, 0.0, 0.0))
    m = facts.model
    fit = fit_dense(uv, fg, None, facts)
    own = camera.project(m.landmark_mean + m.displace(m.landmark_basis, b))[:, :2]
    truth = dense_landmarks(facts, b, camera)
    moved = np.linalg.norm(truth - own, axis=1) > 0.5
    assert moved[CONTOUR].any() and not moved[17:].any()
    assert np.linalg.norm(fit.landmarks - truth, axis=1).max() < 0.05


def test_too_few_pixels_and_no_face_model_are_one_line_fit_errors():
    facts, _, _, uv, fg = toy_face()
    few = np.zeros_like(fg)
    few[40:44, 40:44] = True
    with pytest.raises(FitError, match="only 16 usable foreground pixels"):
        fit_dense(uv, few, None, facts)
    old = TemplateFacts(facts.landmark_uv, facts.uv_to_xyz, facts.eye_distance, facts.part_uv)
    with pytest.raises(FitError, match="no face model for a dense fit"):
        fit_dense(uv, fg, None, old)


# ----------------------------------------------------------------------------------------------------
# template.h5: the face model's arrays, written, read and refused


def test_template_h5_carries_the_face_model_and_older_files_still_read(tmp_path):
    write_template(tmp_path / "t.h5", toy_facts())
    facts = read_template_facts(tmp_path / "t.h5")
    assert facts.model is not None and facts.model.size == 3 and facts.model.axes == 3
    for name, a in facts.model.arrays().items():
        assert np.array_equal(a, np.asarray(toy_facts()[name], a.dtype), equal_nan=True), name
    old = {k: v for k, v in toy_facts().items() if k in ("landmark_uv", "uv_to_xyz", "eye_distance", "part_uv",
                                                          "template_id", "template_hash", "units", "model_size")}
    write_template(tmp_path / "old.h5", old)
    assert read_template_facts(tmp_path / "old.h5").model is None


def _edit(name, make):
    """An editor of HDF5 dataset `name` (template.h5 or a checkpoint): `make(f, name, data)` replaces it."""
    def edit(path):
        with h5py.File(path, "a") as f:
            data = f[name][()]
            del f[name]
            make(f, name, data)
    return edit


def _nan(f, name, data):
    data = data.copy()
    data.flat[0] = np.nan
    f[name] = data


def _too_many_bytes(path):
    """Every face-model array consistent, but 512 x 512 x 3 x 32 floats of uv_to_basis (stored empty)."""
    with h5py.File(path, "a") as f:
        for name in ("uv_to_basis", "basis_sd", "basis_to_model", "basis_constraints", "landmark_basis", "contour_basis"):
            del f[name]
        m = len(f["contour_row"])
        f.create_dataset("uv_to_basis", (512, 512, 3, 32), "f4", chunks=(1, 64, 3, 32))
        f["basis_sd"], f["basis_to_model"] = np.ones(32), np.ones((32, 3))
        f["basis_constraints"] = np.zeros((0, 32, 3))
        f["landmark_basis"], f["contour_basis"] = np.zeros((68, 3, 32), "f4"), np.zeros((m, 3, 32), "f4")


BAD_TEMPLATES = {
    "too many bytes": (_too_many_bytes, "the face-model arrays take 100"),
    "NaN prior": (_edit("basis_sd", _nan), "basis_sd holds NaN or infinite values"),
    "NaN on the face": (_edit("uv_to_basis", lambda f, n, d: f.create_dataset(n, data=np.where(
        np.arange(d.shape[3]) == 1, np.nan, d).astype(np.float32))), "uv_to_basis must be finite on the face"),
    "wrong shape": (_edit("landmark_basis", lambda f, n, d: f.create_dataset(n, data=d[..., :2])),
                    "landmark_basis has shape (68, 3, 2), expected (68, A, K) with B = 65, A = 3, K = 3"),
    "wrong dtype": (_edit("contour_row", lambda f, n, d: f.create_dataset(n, data=d.astype(np.float64))),
                    "contour_row is float64 (96,), expected int64 (M,)"),
    "huge": (_edit("uv_to_basis", lambda f, n, d: f.create_dataset(n, (4096, 4096, 3, 3), "f4", chunks=(1, 64, 3, 3))),
             "uv_to_basis has shape (4096, 4096, 3, 3)"),
    "missing array": (_edit("contour_outward", lambda f, n, d: None), "but not contour_outward"),
    "too many coefficients": (_edit("basis_to_model", lambda f, n, d: f.create_dataset(n, data=np.eye(3, 5))),
                              "basis_to_model maps to 5 model coefficients, the model has 3"),
    "rows out of order": (_edit("contour_row", lambda f, n, d: f.create_dataset(n, data=d[::-1].copy())),
                          "row must run 0, 0, ..., 1, ... up to 15 without gaps"),
    "constraints on vector directions": (_edit("basis_constraints", lambda f, n, d: f.create_dataset(
        n, data=np.ones((1, 3, 3)))), "basis_constraints must be empty (0, K, 3) for vector directions"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
def test_a_bad_face_model_in_template_h5_is_one_shard_format_error(tmp_path, case):
    edit, needle = BAD_TEMPLATES[case]
    path = write_template(tmp_path / "template.h5", toy_facts())
    edit(path)
    with pytest.raises(ShardFormatError) as info:
        read_template_facts(path)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path)) and needle in msg, msg


# ----------------------------------------------------------------------------------------------------
# checkpoints carry the face model; train, eval --fit and a fit from the checkpoint alone


def toy_shards(root: Path) -> Path:
    """net_fakes' shards with the toy face model in template.h5 (MODEL_SIZE vector directions)."""
    shards = write_shards(root, {"train": 4, "val": 2})
    assert MODEL_SIZE == 3
    write_template(shards / TEMPLATE, toy_facts())
    return shards


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    from densereg_net.train import TrainConfig, train

    root = tmp_path_factory.mktemp("fit")
    torch.set_num_threads(1)
    train(TrainConfig(shards=str(toy_shards(root / "shards")), out=str(root / "run"), epochs=1, batch_size=2,
                      width=8, num_workers=0))
    return root


def test_a_checkpoint_carries_the_face_model_and_eval_scores_both_read_outs(toy_run, tmp_path):
    from densereg_net.evaluate import evaluate

    ckpt = load_checkpoint(toy_run / "run" / "best.pt")
    facts = ckpt["template_facts"]
    shards_facts = read_template_facts(toy_run / "shards" / TEMPLATE)
    assert ckpt["template"]["model_size"] == 3 and ckpt["template"]["expression_size"] == 0
    for name, a in shards_facts.model.arrays().items():
        assert np.array_equal(getattr(facts.model, name), a, equal_nan=True), name
    assert np.array_equal(facts.uv_to_xyz, shards_facts.uv_to_xyz, equal_nan=True)
    report = evaluate(toy_run / "run" / "best.pt", toy_run / "shards", device="cpu", fit=True, out=tmp_path / "r")
    fitted = report["dense_fit"]
    assert set(fitted) == {"landmarks", "ms_per_face", "ms_mean", "failed", "inlier_fraction"}
    assert fitted["landmarks"]["n"] == 2 and len(report["per_image"]["dense_fit_nme"]) == 2
    assert fitted["failed"] in (0, 1, 2) and np.isfinite(fitted["ms_per_face"]) == (fitted["failed"] < 2)
    assert "dense_fit" in json.loads((tmp_path / "r" / "report.json").read_text())
    # the combined read-out (both averaged) errs per point at most the mean of the two errors
    per = report["per_image"]
    assert report["combined"]["landmarks"]["n"] == 2 and len(per["combined_nme"]) == 2
    assert all(c <= max(a, (a + b) / 2) + 1e-9 for a, b, c in zip(per["nme"], per["dense_fit_nme"], per["combined_nme"]))
    assert "dense_fit" not in evaluate(toy_run / "run" / "best.pt", toy_run / "shards", device="cpu")


def test_eval_fit_without_a_face_model_says_rebuild_in_one_line(tmp_path):
    from densereg_net.evaluate import evaluate
    from densereg_net.train import TrainConfig, train

    shards = write_shards(tmp_path / "shards", {"train": 2, "val": 1})
    train(TrainConfig(shards=str(shards), out=str(tmp_path / "run"), epochs=1, batch_size=2, width=8, num_workers=0))
    assert load_checkpoint(tmp_path / "run" / "best.pt")["template_facts"] is None
    with pytest.raises(ShardFormatError, match=f"--fit: .*template.h5 .*{re.escape(NO_FACE_MODEL)}"):
        evaluate(tmp_path / "run" / "best.pt", shards, device="cpu", fit=True)


def _ckpt_meta(**changes):
    def edit(path):
        with h5py.File(path, "a") as f:
            meta = json.loads(f.attrs["densereg_checkpoint"])
            meta["template"].update(changes)
            for k in [k for k, v in changes.items() if v is None]:
                del meta["template"][k]
            f.attrs["densereg_checkpoint"] = json.dumps(meta)
    return edit


BAD_CHECKPOINTS = {
    "NaN prior": (_edit("template:basis_sd", _nan), "template basis_sd holds NaN or infinite values"),
    "wrong shape": (_edit("template:contour_basis", lambda f, n, d: f.create_dataset(n, data=d[:, :, :2])),
                    "contour_basis has shape (96, 3, 2), expected (M, A, K)"),
    "huge": (_edit("template:uv_to_basis", lambda f, n, d: f.create_dataset(n, (4096, 4096, 3, 3), "f4",
                                                                               chunks=(1, 64, 3, 3))),
             "uv_to_basis has shape (4096, 4096, 3, 3)"),
    "grid without the model": (_edit("template:uv_to_basis", lambda f, n, d: None), "but not uv_to_basis"),
    "unknown template array": (_edit("template:part_uv", lambda f, n, d: (f.create_dataset(n, data=d),
                                                                               f.create_dataset("template:evil", data=d))),
                               "unexpected dataset template:evil"),
    "grids disagree": (_edit("template:part_uv", lambda f, n, d: f.create_dataset(n, data=d[:-1, :-1])),
                       "template:part_uv is uint8 (64, 64), expected uint8 (65, 65)"),
    "sizes missing": (_ckpt_meta(model_size=None, expression_size=None),
                      "the template metadata has no model_size and expression_size"),
    "coefficients disagree": (_ckpt_meta(model_size=7), "basis_to_model maps to 3 model coefficients, the model has 7"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_checkpoint_with_a_bad_face_model_is_one_checkpoint_error(toy_run, tmp_path, case):
    edit, needle = BAD_CHECKPOINTS[case]
    path = tmp_path / "c.pt"
    shutil.copy(toy_run / "run" / "best.pt", path)
    edit(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path)) and needle in msg, msg


def test_confidence_is_the_decoded_bins_probability_from_the_same_forward_pass():
    from densereg_net.model import build_model

    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32)
    for head in ("quantized", "classification", "regression"):
        model = build_model(head, 10, 8).eval()
        with head_outputs(model) as seen:
            pred = model.predict(image)
        out = model(image)
        conf = dense_confidence(seen["out"])
        assert conf.shape == (2, 32, 32) and float(conf.min()) >= 0 and float(conf.max()) <= 1
        assert torch.allclose(conf, dense_confidence(out))
        fg = 1 - torch.softmax(out["parts"], 1)[:, 0]
        if head == "regression":
            assert torch.allclose(conf, fg)
        else:
            p_u = torch.softmax(out["u_cls"], 1).gather(1, (pred["uv"][:, :1] * 10).long().clamp(0, 9) + 1)[:, 0]
            on = pred["fg"]
            assert torch.all(conf[on] <= fg[on] * p_u[on] + 1e-6)
    last = seen["out"]
    model(image)
    assert seen["out"] is last  # the hook is gone after the block


FIT_RUN = """
import json, sys


class NotInstalled:  # a training machine: none of the heavy stack
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError(name + " is not installed on a training machine")


sys.meta_path.insert(0, NotInstalled())
import numpy as np
from densereg_net.checkpoint import load_checkpoint
from densereg_net.dense_fit import fit_dense
from densereg_net.evaluate import evaluate
ckpt = load_checkpoint({ckpt!r})
uv = np.load({uv!r})
fit = fit_dense(uv["uv"], uv["fg"], None, ckpt["template_facts"])
rep = evaluate({ckpt!r}, {shards!r}, device="cpu", fit=True)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"landmarks": fit.landmarks.tolist(), "fit": "dense_fit" in rep, "heavy": heavy}}))
"""


def test_a_fit_from_the_checkpoint_alone_needs_no_heavy_stack(toy_run, tmp_path):
    from test_contract import HEAVY

    facts, b, camera, uv, fg = toy_face()
    np.savez(tmp_path / "uv.npz", uv=uv, fg=fg)
    code = FIT_RUN.format(heavy=HEAVY, ckpt=str(toy_run / "run" / "best.pt"), uv=str(tmp_path / "uv.npz"),
                          shards=str(toy_run / "shards"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fit"] and out["heavy"] == []
    assert np.abs(np.array(out["landmarks"]) - dense_landmarks(facts, b, camera)).max() < 0.05


# ----------------------------------------------------------------------------------------------------
# the label generator's own faces (heavy stack)


@pytest.fixture(scope="module")
def labelled():
    """Three 300w-dev faces labelled at 256 px by Labeller("menpo3d"), and the model's template facts."""
    pytest.importorskip("menpo3d")
    if not DEV.is_dir():
        pytest.skip(f"{DEV} is not here")
    from densereg_data.face.labeller import Labeller
    from densereg_data.io.images import read_image
    from densereg_data.io.landmarks import read_landmarks

    lab = Labeller("menpo3d")
    facts = TemplateFacts.from_dict(lab.model.facts(256))
    out = []
    for pts in sorted(DEV.rglob("*.pts"))[:3]:
        image = read_image(next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts"))
        labels = lab.label_crop(image, read_landmarks(pts).points, size=256)
        truth = lab.fitter.project_landmarks(labels.fit.coefficients, labels.fit.camera)
        out.append((labels.uv.astype(np.float16).astype(np.float32), labels.parts > 0, truth, labels.fit.camera))
    return lab, facts, out


def test_the_dense_fit_recovers_the_label_fit_of_real_faces(labelled):
    """On the label generator's own U-V maps: the inner landmarks (17-67) within 0.5 px of the labeller's
    model landmarks, all 68 within 0.5 px on average (the jaw points slide on a silhouette whose rule
    depends on the fitted rotation and unseen depth), the pose within 5 degrees (the landmark fit's own
    pose error on synthetic truth is about 2)."""
    _, facts, faces = labelled
    for uv, fg, truth, camera in faces:
        fit = fit_dense(uv, fg, None, facts)
        err = np.linalg.norm(fit.landmarks - truth, axis=1)
        assert err[17:].max() < 0.5 and err.mean() < 0.5, err
        assert rotation_angle(fit.camera.rotation, camera.rotation) < 5.0


def test_thirty_percent_outliers_on_real_faces_cost_little(labelled):
    """Random U-V on 30% of the face pixels: inner landmarks within 1 px, NME under 1%."""
    _, facts, faces = labelled
    for uv, fg, truth, camera in faces:
        fit = fit_dense(with_outliers(uv, fg, 0.3), fg, None, facts)
        err = np.linalg.norm(fit.landmarks - truth, axis=1)
        eye = np.linalg.norm(np.subtract(*truth[list(OUTER_EYE_CORNERS)]))
        assert err[17:].max() < 1.0 and err.mean() / eye < 0.01, err


def test_the_face_models_arrays_agree_with_the_model(labelled):
    """basis_to_model, landmark_basis and uv_to_basis describe the same shapes as the model itself."""
    lab, facts, _ = labelled
    m, shape, fitter = facts.model, lab.model.shape, lab.fitter
    b = np.random.default_rng(0).normal(size=(m.size, 3)) * m.basis_sd[:, None]
    identity, _ = m.model_coefficients(b)
    coefficients = identity.reshape(shape.zero().shape)
    lm_mean, lm_local = shape.at(fitter.landmark_vertices, fitter.landmark_weights)
    assert np.abs(lm_mean + shape.displace(lm_local, coefficients) - (m.landmark_mean + m.displace(m.landmark_basis, b))).max() < 1e-3
    at_uv = m.displace(m.basis(lab.model.template.landmark_uv[17:]).astype(np.float64), b)
    assert np.abs(at_uv - m.displace(m.landmark_basis, b)[17:]).max() < 0.05 * np.abs(at_uv).max()
    raw = np.random.default_rng(1).normal(size=shape.zero().shape) * shape.prior_std[:, None]
    for c, constrained in ((shape.constrain(raw), True), (raw, False)):  # the model's own constraint, in b
        b_c = np.linalg.lstsq(m.basis_to_model.T, c, rcond=None)[0]
        e = np.einsum("skc,kc->s", m.basis_constraints, b_c) / np.linalg.norm(m.basis_constraints, axis=(1, 2))
        assert (np.abs(e).max() / np.linalg.norm(b_c) < 1e-9) == constrained, e
    cam = Camera("orthographic", FLIP_YZ @ rotation_from_pose(20, 5, 0), np.array([128.0, 128, 0]), scale=1.2)
    assert np.abs(dense_landmarks(facts, b, cam) - fitter.project_landmarks(coefficients, cam)).max() < 1e-3


def test_predict_fit_writes_the_fitted_model_beside_the_prediction(toy_run, tmp_path, capsys, monkeypatch):
    """`densereg-net predict --fit`: the dense fit's landmarks (.pts), pose and coefficients (.json) and
    mesh (.obj) beside the four prediction files. The untrained toy network's U-V is noise, so the fit
    is given the toy face's perfect map instead (the files are what is tested here)."""
    from PIL import Image

    from densereg_cli.net import main
    from densereg_data.io.landmarks import read_landmarks
    from densereg_net import dense_fit

    real = dense_fit.fit_dense
    _, _, _, toy_uv, toy_fg = toy_face()
    monkeypatch.setattr(dense_fit, "fit_dense", lambda uv, fg, conf, facts: real(toy_uv, toy_fg, None, facts))

    ckpt = str(toy_run / "run" / "best.pt")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "f.png")
    args = ["predict", ckpt, str(tmp_path / "f.png"), "--bbox", "10,5,50,50", "--device", "cpu", "--fit"]
    code = main(args + ["--out", str(tmp_path / "o")])
    files = {Path(p).name for p in capsys.readouterr().out.split()}
    assert code == 0 and {"f_fit.pts", "f_fit.json", "f_fit.obj", "f_combined.pts", "f.pts", "f_overlay.png"} <= files
    both = [read_landmarks(tmp_path / "o" / name).points for name in ("f.pts", "f_fit.pts", "f_combined.pts")]
    assert np.allclose(both[2], (both[0] + both[1]) / 2, atol=2e-3)
    doc = json.loads((tmp_path / "o" / "f_fit.json").read_text())
    assert set(doc["pose_deg"]) == {"yaw", "pitch", "roll"} and len(doc["landmarks"]) == 68
    assert np.allclose(read_landmarks(tmp_path / "o" / "f_fit.pts").points, doc["landmarks"], atol=1e-3)
    obj = (tmp_path / "o" / "f_fit.obj").read_text().splitlines()
    v = np.array([[float(t) for t in line.split()[1:]] for line in obj if line.startswith("v ")])
    f = np.array([[int(t) for t in line.split()[1:]] for line in obj if line.startswith("f ")])
    assert len(v) > 100 and f.min() == 1 and f.max() <= len(v) and np.isfinite(v).all()
    from densereg_net.predict import Predictor
    pred = Predictor(ckpt, "cpu").predict(np.asarray(Image.open(tmp_path / "f.png")), bbox=(10, 5, 50, 50), fit=True)
    assert np.allclose(pred.combined_landmarks, (pred.landmarks + pred.fit_landmarks) / 2)
    assert Predictor(ckpt, "cpu").predict(np.asarray(Image.open(tmp_path / "f.png")), bbox=(10, 5, 50, 50)).combined_landmarks is None


def test_predict_fit_without_a_face_model_is_one_line(tmp_path, capsys):
    from PIL import Image

    from densereg_cli.net import main
    from densereg_net.train import TrainConfig, train

    shards = write_shards(tmp_path / "s", {"train": 2})
    torch.set_num_threads(1)
    train(TrainConfig(shards=str(shards), out=str(tmp_path / "r"), epochs=1, batch_size=2, width=8, num_workers=0))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "f.png")
    code = main(["predict", str(tmp_path / "r" / "last.pt"), str(tmp_path / "f.png"), "--bbox", "5,5,30,30",
                 "--fit", "--device", "cpu", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "carries no face model" in err[0]
    assert not (tmp_path / "o").exists()
