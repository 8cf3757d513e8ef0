"""Fit-only runs: a build's pipeline without images or rendering (`densereg-data fit`).

Every annotated face of a dataset (`Dataset.annotations`: its image need not be at hand) is fitted
with the face model; per face the run writes the pose, identity and expression coefficients, the
fitted landmarks, per-landmark residuals and both NMEs, in HDF5 files of `samples_per_shard` faces
(``<split>-<nnnnn>.h5``), plus ``skipped.jsonl`` (faces that could not be fitted, with the reason),
``summary.json`` and ``summary.md`` (per split and subset: faces, failures, median and mean NMEs).
Like a build it is resumable (a complete file of the same plan is kept), locked, and never writes
over its inputs or into a folder that holds something else.

Convention: the two NMEs
    Both average the residuals of the VISIBLE landmarks only (an occluded point's position is the
    annotator's guess; a missing one has none). nme_eye: that mean / distance of the annotated outer
    eye corners (36, 45), NaN unless both are placed; nme_box: the same / sqrt(width x height) of the
    visible landmarks' bounding box, defined for every face with two or more visible points. A failure
    is nme_box > FAILURE_BOX_NME.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.build.config import BuildConfig
from densereg_data.build.datasets import SampleRef, make_dataset
from densereg_data.build.executors import EXECUTORS
from densereg_data.build.plan import check_out_vs_root, lock_out, plan_shards
from densereg_data.errors import BuildError, DenseRegError
from densereg_data.format.files import atomic_write_bytes, dumps_json

log = logging.getLogger(__name__)

__all__ = ["FitRunReport", "run_fit", "fit_refs", "FAILURE_BOX_NME"]

FORMAT = "densereg-fits"
FORMAT_VERSION = 1
#: A fit whose box-normalised NME exceeds this is counted as failed in the summary.
FAILURE_BOX_NME = 0.1
#: Faces per task sent to a worker (one face per task would cost more in messages than in fitting).
BATCH = 64


@dataclass
class FitRunReport:
    out: str
    faces: int = 0
    fitted: int = 0
    skipped: int = 0
    resumed_files: int = 0
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    summary_binding: dict | None = None

    @property
    def faces_per_second(self) -> float:
        return self.fitted / self.seconds if self.seconds > 0 else 0.0


_FITTERS: dict = {}


def _fitter(model, binding: tuple | None):
    """The model's fitter, or (per process, once) the fitter of a scheme binding (name, triangles, bary)."""
    if binding is None:
        return model.fitter
    key = (model.hash, binding[0], binding[1].tobytes())
    if key not in _FITTERS:
        from densereg_data.face.fit import Fitter
        from densereg_data.face.template import LandmarkBinding
        from densereg_data.schemes import load_scheme

        _FITTERS[key] = Fitter(model.template, model.shape, load_scheme(binding[0]), LandmarkBinding(*binding))
    return _FITTERS[key]


def fit_refs(refs: list[SampleRef], spec: str, binding: tuple | None = None) -> list[dict]:
    """Fit each ref's annotation (a worker's task): per face a dict of arrays, or {"skip": reason}.
    binding: None to fit the 68 iBUG points, or (scheme name, triangles, bary) to fit the annotation's
    own scheme (`face.scheme_binding`)."""
    from densereg_data.face.models import load_face_model
    from densereg_data.io.landmarks import read_landmarks

    model = load_face_model(spec)
    fitter = _fitter(model, binding)
    out = []
    for ref in refs:
        try:
            if ref.annotation is not None:
                a = ref.annotation.extra.get("native", ref.annotation) if binding is not None else ref.annotation
                points, state = a.points, a.state
            else:
                points, state = read_landmarks(ref.landmarks).points, np.full(cv.N_LANDMARKS, cv.VISIBLE, np.uint8)
            fit = fitter.fit(points, state=state)
        except DenseRegError as exc:
            out.append({"skip": f"{type(exc).__name__}: {exc}"})
            continue
        identity, expression = model.shape.split(fit.coefficients)
        placed, visible = state != cv.MISSING, state == cv.VISIBLE
        error = float(fit.residuals[visible].mean()) if visible.any() else np.nan
        corners = list(fitter.scheme.eye_corners)
        eye = error / float(np.linalg.norm(np.subtract(*points[corners]))) if placed[corners].all() else np.nan
        box = np.ptp(points[visible], axis=0) if visible.sum() > 1 else np.zeros(2)
        nme_box = error / float(np.sqrt(box[0] * box[1])) if box.min() > 0 else np.nan
        pose = ref.annotation.pose if ref.annotation is not None and ref.annotation.pose is not None else np.full(3, np.nan)
        out.append({"pose": fit.pose, "dataset_pose": pose, "identity": identity, "expression": expression,
                    "landmarks": np.where(placed[:, None], points, np.nan), "landmark_state": state,
                    "fitted_landmarks": fit.fitted_landmarks, "residuals": fit.residuals, "nme_eye": eye,
                    "nme_box": nme_box, "image_from_template": fit.camera.image_from_template})
    return out


def _write(path: Path, split: str, refs: list[SampleRef], results: list[dict], attrs: dict,
           held_out: frozenset = frozenset()) -> None:
    """One fit file: the fitted faces of `refs` (skips left out), atomically; a face in `held_out` gets
    the subset "held-out" (not used to bind the scheme's points)."""
    import io

    import h5py

    kept = [(r, res) for r, res in zip(refs, results) if "skip" not in res]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "split": split, **attrs})
        f.create_dataset("source", data=np.array([r.source for r, _ in kept], dtype=h5py.string_dtype("utf-8")))
        subsets = [",".join((*(r.annotation.subsets if r.annotation else ()), *(("held-out",) if r.source in held_out else ())))
                   for r, _ in kept]
        f.create_dataset("subsets", data=np.array(subsets, dtype=h5py.string_dtype("utf-8")))
        for name in ("pose", "dataset_pose", "identity", "expression", "landmarks", "landmark_state", "fitted_landmarks",
                     "residuals", "nme_eye", "nme_box", "image_from_template"):
            values = [np.asarray(res[name]) for _, res in kept]
            dtype = np.uint8 if name == "landmark_state" else np.float32
            shape = values[0].shape if values else {"nme_eye": (), "nme_box": ()}.get(name, (0,))
            f.create_dataset(name, data=np.stack(values).astype(dtype) if values else np.zeros((0, *shape), dtype))
    atomic_write_bytes(path, buf.getvalue())


def _complete(path: Path, digest: str) -> tuple[int, list[dict]] | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or f.attrs.get("plan_sha256") != digest:
                return None
            return len(f["source"]), json.loads(f.attrs.get("skipped", "[]"))
    except (OSError, ValueError, KeyError):
        return None


def run_fit(cfg: BuildConfig) -> FitRunReport:
    """Fit every annotated face of `cfg`'s dataset and split with `cfg.model`; write `cfg.out` (see
    the module). Raises BuildError on a bad setup or a write failure; never on one bad face."""
    out = Path(cfg.out).expanduser()
    dataset = make_dataset(cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, seed=cfg.seed, images=cfg.images)
    check_out_vs_root(out, dataset.root)
    scan = dataset.annotations(cfg.split)
    if not scan.samples:
        raise BuildError(f"no annotated faces found under {dataset.root} (split {cfg.split!r}, {len(scan.unpaired)} problems)")
    if cfg.scheme not in ("ibug68", "native"):
        raise BuildError(f"--scheme must be ibug68 or native, got {cfg.scheme!r}")
    config = {"fit": {k: getattr(cfg, k) for k in ("dataset", "model", "split", "val_fraction", "seed", "scheme")},
              "root": str(dataset.root), "format": FORMAT, "format_version": FORMAT_VERSION}
    config_bytes = dumps_json(config)
    config_sha = hashlib.sha256(config_bytes).hexdigest()
    report = FitRunReport(out=str(out), faces=len(scan.samples))
    with lock_out(out):
        existing = out / "config.json"
        others = [p for p in out.iterdir() if not p.name.startswith(".tmp-")]
        if others and not (existing.is_file() and existing.read_bytes() == config_bytes):
            raise BuildError(f"output folder {out} is not empty and holds no fit run of this configuration; "
                             "choose another --out")
        atomic_write_bytes(existing, config_bytes)
        plan = plan_shards(scan, int(cfg.samples_per_shard), config_sha)
        skipped = [{"source": u.source, "split": u.split, "kind": "annotation", "reason": u.reason} for u in scan.unpaired]
        todo = []
        for entry in plan:
            done = _complete(out / entry["file"], entry["plan_sha256"])
            if done is None:
                todo.append(entry)
            else:
                report.resumed_files += 1
                skipped += done[1]
        t0 = time.perf_counter()
        from densereg_data.face.models import load_face_model

        load_face_model(cfg.model).fitter  # noqa: B018 - loaded once here, inherited by forked workers
        binding, held_out, report.summary_binding = _native_binding(cfg, scan.samples)
        executor = EXECUTORS[cfg.executor](cfg)
        try:
            bar = _bar(cfg, sum(len(e["refs"]) for e in todo))
            for entry in todo:
                refs = list(entry["refs"])
                batches = [refs[i:i + BATCH] for i in range(0, len(refs), BATCH)]
                results = [res for batch in executor.imap(fit_refs, batches, cfg.model, binding) for res in batch]
                skips = [{"source": r.source, "split": r.split, "kind": "fit", "reason": res["skip"]}
                         for r, res in zip(refs, results) if "skip" in res]
                _write(out / entry["file"], entry["split"], refs, results,
                       {"plan_sha256": entry["plan_sha256"], "skipped": json.dumps(skips)}, held_out)
                skipped += skips
                report.fitted += len(refs) - len(skips)
                bar.update(len(refs))
            bar.close()
        except OSError as exc:
            raise BuildError(f"cannot write the fit results to {out}: {exc.strerror or exc}") from None
        finally:
            executor.close()
        report.seconds = time.perf_counter() - t0
        report.skipped = len(skipped)
        atomic_write_bytes(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped).encode())
        report.summary = summarise(out, [e["file"] for e in plan], len(skipped))
        if report.summary_binding:
            report.summary["binding"] = report.summary_binding
        atomic_write_bytes(out / "summary.json", dumps_json(report.summary))
        atomic_write_bytes(out / "summary.md", summary_table(report.summary).encode())
    return report


def _native_binding(cfg: BuildConfig, refs) -> tuple[tuple | None, frozenset, dict | None]:
    """With --scheme native and faces annotated in a scheme other than iBUG's: its binding to the model,
    derived (`face.scheme_binding`) from the faces whose source hashes into the first half (the
    `pts` dataset's rule, seed 0), and the other half's sources (held out: scored, not used to bind)."""
    from densereg_data.build.datasets.folder import val_score

    natives = [r.annotation.extra.get("native", r.annotation) for r in refs if r.annotation is not None]
    schemes = {a.scheme for a in natives}
    if cfg.scheme != "native" or schemes <= {"ibug68"}:
        return None, frozenset(), None
    if len(schemes) > 1:
        raise BuildError(f"--scheme native: the faces come in several schemes ({', '.join(sorted(schemes))})")
    from densereg_data.face.models import load_face_model
    from densereg_data.face.scheme_binding import derive_binding
    from densereg_data.schemes import load_scheme

    scheme = load_scheme(schemes.pop())
    derive = [a for a in natives if val_score(a.source, 0) < 0.5]
    binding, stats = derive_binding(load_face_model(cfg.model), scheme, derive)
    held_out = frozenset(a.source for a in natives if val_score(a.source, 0) >= 0.5)
    return (scheme.name, binding.triangles, binding.bary), held_out, {"scheme": scheme.name, **stats}


def _bar(cfg: BuildConfig, total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="face", file=sys.stderr, dynamic_ncols=True, desc="fitting",
                disable=(not cfg.progress) or total == 0 or not sys.stderr.isatty())


def summarise(out: Path, files: list[str], skipped: int) -> dict:
    """Per split and per subset: faces, failures, median and mean eye- and box-NME (see the module)."""
    import h5py

    groups: dict[str, dict[str, list]] = {}
    for name in files:
        with h5py.File(out / name, "r") as f:
            split = str(f.attrs["split"])
            subsets = [s.decode() if isinstance(s, bytes) else str(s) for s in f["subsets"][()]]
            eye, box = f["nme_eye"][()], f["nme_box"][()]
        for i in range(len(box)):
            for key in [split] + [f"{split}/{s}" for s in subsets[i].split(",") if s]:
                g = groups.setdefault(key, {"eye": [], "box": []})
                g["eye"].append(float(eye[i]))
                g["box"].append(float(box[i]))
    table = {}
    for key, g in sorted(groups.items()):
        eye, box = np.array(g["eye"]), np.array(g["box"])
        eye, box = eye[np.isfinite(eye)], box[np.isfinite(box)]
        table[key] = {"faces": int(len(box)), "failures": int((box > FAILURE_BOX_NME).sum()),
                      "box_nme_median": float(np.median(box)), "box_nme_mean": float(box.mean()),
                      "eye_faces": int(len(eye)), "eye_nme_median": float(np.median(eye)) if len(eye) else None,
                      "eye_nme_mean": float(eye.mean()) if len(eye) else None}
    return {"groups": table, "skipped": skipped, "failure_box_nme": FAILURE_BOX_NME}


def summary_table(summary: dict) -> str:
    """summary.json as a markdown table."""
    rows = ["| split / subset | faces | box-NME median | box-NME mean | eye-NME median (faces) | failures |",
            "|---|---|---|---|---|---|"]
    for key, g in summary["groups"].items():
        eye = "-" if g["eye_nme_median"] is None else f"{100 * g['eye_nme_median']:.2f}% ({g['eye_faces']})"
        rows.append(f"| {key} | {g['faces']} | {100 * g['box_nme_median']:.2f}% | {100 * g['box_nme_mean']:.2f}% | {eye} | "
                    f"{g['failures']} |")
    rows.append(f"\nskipped: {summary['skipped']} (skipped.jsonl); failure: box-NME > {100 * summary['failure_box_nme']:.0f}%")
    return "\n".join(rows) + "\n"
