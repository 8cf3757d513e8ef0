"""The build pipeline: a dataset's samples -> labelled crops -> shard files (docs/FORMAT.md).

One pure function per sample (`label_sample`: read image + landmarks, label, return arrays or a skip
reason) and executors around it (`EXECUTORS`: "local" process pool, "dask"), both driven by the same
`run_build`. The labeller is injected through `Backend` (the default uses `densereg_data.face.labeller`).

Determinism and resuming: the samples are sorted (split, source) and cut into shards by that order
alone, so shard membership never depends on completion order; results are written in that order.
Each shard records a hash of its planned sample list (`plan_sha256`) and the samples it skipped. A
rerun of the same command keeps every shard that is complete and matches its plan, removes stale
temporary files, and writes only the rest, so an interrupted build resumed equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from densereg_data.geometry.affine import apply_affine, compose_affine
from densereg_data.build.executors import EXECUTORS, cpu_count  # noqa: F401  (re-exported registry)
from densereg_data.build.datasets import SampleRef, Scan, make_dataset
from densereg_data.errors import BuildError, DenseRegError, FitError, ImageFileError, LandmarkFileError, ShardFormatError
from densereg_data.format import (COMPRESSIONS, CONFIG, FORMAT_VERSION, INDEX, SHARD_RE, SKIPPED, TEMPLATE, TMP_PREFIX, ShardRecord,
                                  ShardWriter, atomic_write_bytes, dumps_json, sample_schema, sha256_file, shard_name,
                                  write_index, write_template)

log = logging.getLogger(__name__)

__all__ = ["BuildConfig", "Backend", "BuildReport", "label_sample", "run_build", "STAGES"]

#: Per-stage timers reported at the end of a build (seconds summed over samples).
STAGES = ("decode", "fit", "crop+render", "write")


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. Output-affecting fields go into config.json (see `output_config`)."""

    dataset: str = "300w"
    root: str | None = None
    out: str = "shards"
    split: str = "all"
    size: int = 256
    margin: float = 0.25
    val_fraction: float = 0.2
    seed: int = 0
    max_fit_nme: float | None = None
    max_skip_fraction: float = 0.05
    samples_per_shard: int = 1000
    max_shard_bytes: int = 512 * 2**20
    workers: int | None = None
    executor: str = "local"
    scheduler: str | None = None
    dask_processes: bool = True
    reduced_decode: bool = True
    compression: str = "lzf"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 4096:
            raise BuildError(f"--size must be in 16..4096, got {self.size}")
        if not 0.0 <= float(self.margin) <= 4.0:
            raise BuildError(f"--margin must be in [0, 4], got {self.margin}")
        if not 0.0 <= float(self.max_skip_fraction) <= 1.0:
            raise BuildError(f"--max-skip-fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.max_fit_nme is not None and not float(self.max_fit_nme) > 0:
            raise BuildError(f"--max-fit-nme must be > 0, got {self.max_fit_nme}")
        if self.workers is not None and int(self.workers) < 1:
            raise BuildError(f"--workers must be >= 1, got {self.workers}")
        if int(self.samples_per_shard) < 1:
            raise BuildError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")
        if self.compression not in COMPRESSIONS:
            raise BuildError(f"--compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.executor not in EXECUTORS:
            raise BuildError(f"unknown executor {self.executor!r} (valid: {', '.join(sorted(EXECUTORS))})")

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def shard_capacity(self) -> int:
        """Samples per shard: the count limit, lowered so a shard stays under max_shard_bytes uncompressed."""
        per_sample = sum(int(np.prod(shape, dtype=np.int64)) * (np.dtype(dt).itemsize if dt != "str" else 64)
                         for dt, shape in sample_schema(self.size, 0).values())
        return max(1, min(int(self.samples_per_shard), int(self.max_shard_bytes) // per_sample))


@dataclass(frozen=True)
class LabelSettings:
    """What a worker needs to label one sample (small, picklable)."""

    size: int
    margin: float
    max_fit_nme: float | None
    reduced_decode: bool = True


class Backend:
    """Where labels come from: a picklable zero-argument `labeller_factory` (returns an object with
    ``label_crop(image, landmarks, size=, margin=)``) and `template_facts(grid)` (template.h5 contents)."""

    def __init__(self, labeller_factory: Callable[[], Any] | None = None,
                 template_facts: Callable[[int], dict] | None = None) -> None:
        self.labeller_factory = labeller_factory or default_labeller
        self.template_facts = template_facts or default_template_facts


def default_labeller():
    from densereg_data.face.labeller import Labeller

    return Labeller()


def default_template_facts(grid: int) -> dict:
    from densereg_data.face.template import template_facts

    return template_facts(grid=grid)


_LABELLERS: dict[Any, Any] = {}


def _labeller_for(factory: Callable[[], Any]):
    """One labeller per process (and per thread, for threaded Dask workers), built on first use."""
    import threading

    name = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"
    key = (name, os.getpid(), threading.get_ident())
    lab = _LABELLERS.get(key)
    if lab is None:
        lab = _LABELLERS[key] = factory()
        fitter = getattr(lab, "fitter", None)
        if fitter is not None and callable(getattr(fitter, "fit", None)):
            try:  # time the fit apart from crop + render, without touching the labeller's code
                lab.fitter = _TimedFitter(fitter)
            except (AttributeError, TypeError):
                pass
    return lab


class _TimedFitter:
    """Delegates to a fitter; remembers how long its last `fit` call took (`last_fit_seconds`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last_fit_seconds = 0.0

    def fit(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._inner.fit(*args, **kwargs)
        finally:
            self.last_fit_seconds = time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def label_sample(ref: SampleRef, settings: LabelSettings, factory: Callable[[], Any]) -> dict[str, Any]:
    """Label one sample. Never raises on bad input: returns ``{"sample": arrays or None, "skip": {...} or
    None, "times": {stage: seconds}}``. `sample` holds the shard datasets of docs/FORMAT.md."""
    from densereg_data.io.images import ReducedImage, read_image, read_image_reduced
    from densereg_data.io.landmarks import read_landmarks

    times = {"decode": 0.0, "fit": 0.0, "crop+render": 0.0}

    def skip(kind: str, reason: str) -> dict:
        return {"sample": None, "skip": {"source": ref.source, "split": ref.split, "kind": kind, "reason": reason},
                "times": times}

    t0 = time.perf_counter()
    try:
        landmarks = read_landmarks(ref.landmarks).points
        lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
        side = float(max(hi - lo)) * (1.0 + 2.0 * settings.margin)
        if settings.reduced_decode and side > 0:  # decode at 1/k with k <= side / S: no detail is lost
            reduced = read_image_reduced(ref.image, min_scale=settings.size / side)
        else:
            full = read_image(ref.image)
            reduced = ReducedImage(full, 1, (full.shape[0], full.shape[1]))
    except LandmarkFileError as exc:
        return skip("landmarks", str(exc))
    except ImageFileError as exc:
        return skip("image", str(exc))
    image = reduced.image
    reduced_from_image = reduced.reduced_from_image
    if reduced.factor != 1:
        landmarks = apply_affine(reduced_from_image, landmarks)
    t1 = time.perf_counter()
    times["decode"] = t1 - t0
    try:
        labeller = _labeller_for(factory)
        out = labeller.label_crop(image, landmarks, size=settings.size, margin=settings.margin)
    except FitError as exc:
        times["fit"] = time.perf_counter() - t1
        return skip("fit", f"fit failed for {ref.source}: {exc}")
    except DenseRegError as exc:
        return skip("label", f"{ref.source}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one sample never ends a build; the skip fraction guards
        log.warning("labelling %s raised %s: %s", ref.source, type(exc).__name__, exc)
        return skip("error", f"unexpected {type(exc).__name__} labelling {ref.source}: {exc}")
    t2 = time.perf_counter()
    times["fit"] = float(getattr(getattr(labeller, "fitter", None), "last_fit_seconds", 0.0))
    times["crop+render"] = max(t2 - t1 - times["fit"], 0.0)
    crop_from_image = np.asarray(out.crop_from_image, np.float64)
    if reduced.factor != 1:  # the labeller saw the reduced image: crop_from_image = crop_from_reduced ∘ reduced_from_image
        crop_from_image = compose_affine(crop_from_image, reduced_from_image)
    nme = float(out.fit_nme)
    if settings.max_fit_nme is not None and not nme <= settings.max_fit_nme:
        return skip("fit_nme", f"fit NME {nme:.4f} > --max-fit-nme {settings.max_fit_nme} for {ref.source}")
    sample = {
        "image": np.asarray(out.image, np.uint8),
        "uv": np.asarray(out.uv).astype(np.float16),
        "parts": np.asarray(out.parts, np.uint8),
        "landmarks": np.asarray(out.landmarks, np.float32),
        "crop_from_image": crop_from_image,
        "source": ref.source,
        "source_size": np.asarray(reduced.source_size, np.int32),
        "fit_nme": np.float32(nme),
        "crop_from_template": np.asarray(out.crop_from_template, np.float64),
        "pose": np.asarray(out.pose, np.float32),
        "coefficients": np.asarray(out.coefficients, np.float32),
    }
    return {"sample": sample, "skip": None, "times": times}


@dataclass
class BuildReport:
    """What a build did. `stage_seconds` sums worker time per stage over the labelled samples."""

    out: str
    written: int = 0
    skipped: int = 0
    candidates: int = 0
    resumed_shards: int = 0
    new_shards: int = 0
    seconds: float = 0.0
    labelled: int = 0
    stage_seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    bytes: int = 0

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["images_per_second"] = self.images_per_second
        return d


def output_config(cfg: BuildConfig, root: str | None, template: dict) -> dict:
    """The config.json document: only what changes the output (not workers, executor, ...)."""
    from densereg_data import __version__

    build = {k: getattr(cfg, k) for k in ("dataset", "split", "size", "margin", "val_fraction", "seed", "max_fit_nme",
                                          "reduced_decode", "compression")}
    build["root"] = root
    build["samples_per_shard"] = cfg.shard_capacity()
    return {"densereg_version": __version__, "format_version": FORMAT_VERSION, "template": template, "build": build}


def _prepare_out(out: Path, config_bytes: bytes, overwrite: bool) -> None:
    """Create `out`, or accept it for resuming, or refuse it (different config) unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        cfg = out / CONFIG
        same = cfg.is_file() and cfg.read_bytes() == config_bytes
        if not same and not overwrite:
            what = "was built with a different configuration" if cfg.is_file() else "is not empty and holds no shards"
            raise BuildError(f"output folder {out} {what}; use --overwrite to replace it or choose another --out")
        if not same:
            log.info("--overwrite: removing the previous build in %s", out)
            for f in out.iterdir():
                if f.name in (INDEX, CONFIG, TEMPLATE, SKIPPED) or SHARD_RE.match(f.name) or f.name.startswith(TMP_PREFIX):
                    f.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f"{TMP_PREFIX}{os.getpid()}-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BuildError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    for f in out.iterdir():  # leftovers of a killed run
        if f.name.startswith(TMP_PREFIX):
            f.unlink(missing_ok=True)


def _plan(scan: Scan, capacity: int, config_sha: str) -> list[dict]:
    """Cut the sorted samples into shards: per split, consecutive groups of `capacity`."""
    plan = []
    by_split: dict[str, list[SampleRef]] = {}
    for s in scan.samples:
        by_split.setdefault(s.split, []).append(s)
    for split, refs in by_split.items():
        for n, lo in enumerate(range(0, len(refs), capacity)):
            group = refs[lo:lo + capacity]
            digest = hashlib.sha256(json.dumps([config_sha, [r.source for r in group]]).encode()).hexdigest()
            plan.append({"file": shard_name(split, n), "split": split, "refs": group, "plan_sha256": digest})
    return plan


def _existing_shard(path: Path, entry: dict, size: int, model_size: int) -> tuple[ShardRecord, list[dict]] | None:
    """The record and skips of an already complete shard matching its plan, else None."""
    import h5py

    from densereg_data.format.verify import check_shard_schema

    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("plan_sha256") != entry["plan_sha256"]:
                return None
            check_shard_schema(f, str(path), size=size, model_size=model_size, samples=None, split=entry["split"])
            n = f["image"].shape[0]
            skipped = json.loads(f.attrs.get("skipped", "[]"))
    except (OSError, ShardFormatError, ValueError) as exc:
        log.warning("redoing %s: %s", path.name, exc)
        return None
    return ShardRecord(path.name, entry["split"], n, path.stat().st_size, sha256_file(path)), skipped


def _progress(cfg: BuildConfig, total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                disable=(not cfg.progress) or not sys.stderr.isatty(), desc="labelling")


def _disk_error(exc: OSError, what: str) -> BuildError:
    why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return BuildError(f"cannot write {what}: {why}; completed shards are kept, rerun the same command to resume")


def run_build(cfg: BuildConfig, backend: Backend | None = None) -> BuildReport:
    """Build (or resume) the shard directory `cfg.out`. Raises `BuildError` on a bad setup, on a write
    failure (completed shards stay), or at the end when more than max_skip_fraction were skipped."""
    backend = backend or Backend()
    t_start = time.perf_counter()
    out = Path(cfg.out).expanduser()
    dataset = make_dataset(cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, seed=cfg.seed)
    scan = dataset.scan(cfg.split)
    candidates = len(scan.samples) + len(scan.unpaired)
    if not scan.samples:
        where = dataset.root if dataset.root is not None else "the sample data folder"
        raise BuildError(f"no image + landmark pairs found under {where} (split {cfg.split!r}, {len(scan.unpaired)} unpaired files)")

    facts = backend.template_facts(256)
    template = {"id": str(facts["template_id"]), "hash": str(facts["template_hash"])}
    model_size = int(facts["model_size"])
    root = str(dataset.root.resolve()) if dataset.root is not None else None
    config_doc = output_config(cfg, root, template)
    config_bytes = dumps_json(config_doc)
    config_sha = hashlib.sha256(config_bytes).hexdigest()
    _prepare_out(out, config_bytes, cfg.overwrite)
    try:
        if not (out / CONFIG).is_file():
            atomic_write_bytes(out / CONFIG, config_bytes)
        if not (out / TEMPLATE).is_file():
            write_template(out / TEMPLATE, facts)
    except OSError as exc:
        raise _disk_error(exc, f"{out / CONFIG} or {TEMPLATE}") from None

    plan = _plan(scan, cfg.shard_capacity(), config_sha)
    planned = {e["file"] for e in plan}
    for f in out.iterdir():
        if SHARD_RE.match(f.name) and f.name not in planned:
            log.info("removing %s: not part of this build's plan", f.name)
            f.unlink()
    report = BuildReport(out=str(out), candidates=candidates)
    records: dict[str, ShardRecord] = {}
    skipped: dict[str, list[dict]] = {}
    todo = []
    for entry in plan:
        done = _existing_shard(out / entry["file"], entry, cfg.size, model_size)
        if done is None:
            todo.append(entry)
        else:
            records[entry["file"]], skipped[entry["file"]] = done
            report.resumed_shards += 1
    if report.resumed_shards:
        log.info("resuming: %d of %d shards already complete", report.resumed_shards, len(plan))

    settings = LabelSettings(cfg.size, float(cfg.margin), cfg.max_fit_nme, cfg.reduced_decode)
    refs = [r for e in todo for r in e["refs"]]
    n_skip_prev = sum(len(v) for v in skipped.values())
    t_label = time.perf_counter()
    if refs:
        executor = EXECUTORS[cfg.executor](cfg)
        bar = _progress(cfg, len(refs))
        results = executor.imap(label_sample, refs, settings, backend.labeller_factory)
        try:
            for entry in todo:
                writer = None
                try:
                    writer = ShardWriter(out / entry["file"], entry["split"], size=cfg.size, model_size=model_size,
                                         capacity=len(entry["refs"]), attrs={"plan_sha256": entry["plan_sha256"]},
                                         compression=cfg.compression)
                    skips = []
                    for ref in entry["refs"]:
                        res = next(results)
                        for stage, sec in res["times"].items():
                            report.stage_seconds[stage] += sec
                        report.labelled += 1
                        if res["skip"] is not None:
                            skips.append(res["skip"])
                        else:
                            t0 = time.perf_counter()
                            writer.append(res["sample"])
                            report.stage_seconds["write"] += time.perf_counter() - t0
                        bar.update(1)
                        bar.set_postfix(skipped=n_skip_prev + sum(len(v) for v in skipped.values()) + len(skips), refresh=False)
                    t0 = time.perf_counter()
                    records[entry["file"]] = writer.close(attrs={"skipped": json.dumps(skips)})
                    report.stage_seconds["write"] += time.perf_counter() - t0
                    skipped[entry["file"]] = skips
                    report.new_shards += 1
                    writer = None
                except OSError as exc:
                    raise _disk_error(exc, f"shard {out / entry['file']}") from None
                finally:
                    if writer is not None:
                        writer.abort()
        finally:
            bar.close()
            executor.close()
    report.seconds = time.perf_counter() - t_label

    ordered = [records[e["file"]] for e in plan]
    all_skips = [{"source": u.source, "split": u.split, "kind": "unpaired", "reason": u.reason} for u in scan.unpaired]
    for e in plan:
        all_skips += skipped[e["file"]]
    aliases = {a: list(m) for a, m in dataset.aliases.items() if all(s in {e["split"] for e in plan} for s in m)}
    from densereg_data import __version__

    try:
        atomic_write_bytes(out / SKIPPED, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in all_skips).encode())
        write_index(out, records=ordered, split_order=list(dict.fromkeys(e["split"] for e in plan)),
                    split_aliases=aliases, image_size=cfg.size, template=template, config_sha256=config_sha,
                    densereg_version=__version__)
    except OSError as exc:
        raise _disk_error(exc, f"{out / INDEX}") from None
    report.written = sum(r.samples for r in ordered)
    report.skipped = len(all_skips)
    report.bytes = sum(r.bytes for r in ordered)
    _log_report(report, time.perf_counter() - t_start)
    if report.skipped > cfg.max_skip_fraction * candidates:
        kinds: dict[str, int] = {}
        for s in all_skips:
            kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
        raise BuildError(
            f"{report.skipped} of {candidates} samples skipped ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
            f"more than --max-skip-fraction {cfg.max_skip_fraction}; see {out / SKIPPED} (the shards written are kept)")
    return report


def _log_report(report: BuildReport, total_seconds: float) -> None:
    log.info("wrote %d samples in %d new + %d resumed shards to %s (%d skipped, see %s)", report.written,
             report.new_shards, report.resumed_shards, report.out, report.skipped, SKIPPED)
    if report.labelled:
        per = {k: 1000 * v / report.labelled for k, v in report.stage_seconds.items()}
        log.info("labelled %d images in %.1f s (%.1f images/s); per image: %s; total %.1f s", report.labelled,
                 report.seconds, report.images_per_second, ", ".join(f"{k} {v:.1f} ms" for k, v in per.items()),
                 total_seconds)
