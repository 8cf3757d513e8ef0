"""The build pipeline: a dataset's samples -> labelled crops -> shard files (docs/FORMAT.md).

One pure function per sample (`label_sample`: read image + landmarks, label, return arrays or a skip
reason) and executors around it (`EXECUTORS`: "local" process pool, "dask"), both driven by the same
`run_build`. Labels come from a `Backend`: by default the face model `cfg.model` of the registry
(`densereg_data.face.models`).

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from densereg_data.build.config import BuildConfig, output_config
from densereg_data.build.datasets import make_dataset
from densereg_data.build.executors import EXECUTORS
from densereg_data.build.plan import check_out_vs_root, existing_shard, lock_out, plan_shards, prepare_out
from densereg_data.build.sample import STAGES, Backend, LabelSettings, label_sample, printable
from densereg_data.errors import BuildError
from densereg_data.format import (CONFIG, INDEX, SHARD_RE, SKIPPED, TEMPLATE, ShardRecord, ShardWriter,
                                  atomic_write_bytes, dumps_json, write_index, write_template)

log = logging.getLogger(__name__)

__all__ = ["BuildConfig", "Backend", "BuildReport", "run_build", "STAGES"]


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
    views: int = 0  # new views written (build.views), included in `written`
    stage_seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    bytes: int = 0

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["images_per_second"] = self.images_per_second
        return d


def _progress(cfg: BuildConfig, total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                disable=(not cfg.progress) or not sys.stderr.isatty(), desc="labelling")


def _disk_error(exc: OSError, what: str) -> BuildError:
    why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return BuildError(f"cannot write {what}: {why}; completed shards are kept, rerun the same command to resume")


def run_build(cfg: BuildConfig, backend: Backend | None = None) -> BuildReport:
    """Build (or resume) the shard directory `cfg.out`. Raises `BuildError` on a bad setup (also: `out`
    is the dataset folder, or another build holds it), on a write failure (completed shards stay), or
    at the end when more than max_skip_fraction were skipped."""
    out = Path(cfg.out).expanduser()
    dataset = make_dataset(cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, seed=cfg.seed, images=cfg.images)
    check_out_vs_root(out, dataset.root)
    scan = dataset.scan(cfg.split)
    if not scan.samples:
        where = dataset.root if dataset.root is not None else "the sample data folder"
        raise BuildError(f"no image + landmark pairs found under {where} (split {cfg.split!r}, {len(scan.unpaired)} unpaired files)")
    with lock_out(out):
        return _run_locked(cfg, backend or Backend.for_model(cfg.model), out, dataset, scan)


def _run_locked(cfg: BuildConfig, backend: Backend, out: Path, dataset, scan) -> BuildReport:
    t_start = time.perf_counter()
    candidates = len(scan.samples) + len(scan.unpaired)
    facts = backend.template_facts(256)
    template = {"id": str(facts["template_id"]), "hash": str(facts["template_hash"]), "model": str(facts.get("model", cfg.model))}
    model_size, expression_size = int(facts["model_size"]), int(facts.get("expression_size", 0))
    root = str(dataset.root.resolve()) if dataset.root is not None else None
    config_doc = output_config(cfg, root, template)
    config_bytes = dumps_json(config_doc)
    config_sha = hashlib.sha256(config_bytes).hexdigest()
    prepare_out(out, config_bytes, cfg.overwrite)
    try:
        if not (out / CONFIG).is_file():
            atomic_write_bytes(out / CONFIG, config_bytes)
        if not (out / TEMPLATE).is_file():
            write_template(out / TEMPLATE, facts)
    except OSError as exc:
        raise _disk_error(exc, f"{out / CONFIG} or {TEMPLATE}") from None

    plan = plan_shards(scan, cfg.shard_capacity(), config_sha)
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
        done = existing_shard(out / entry["file"], entry, cfg.size, model_size, expression_size)
        if done is None:
            todo.append(entry)
        else:
            records[entry["file"]], skipped[entry["file"]] = done
            report.resumed_shards += 1
    if report.resumed_shards:
        log.info("resuming: %d of %d shards already complete", report.resumed_shards, len(plan))

    settings = LabelSettings.of(cfg)
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
                                         capacity=len(entry["refs"]) * cfg.samples_per_face,
                                         attrs={"plan_sha256": entry["plan_sha256"]},
                                         compression=cfg.compression, expression_size=expression_size)
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
                            for sample in [res["sample"], *res.get("views", ())]:  # a face, then its new views
                                writer.append(sample)
                            report.stage_seconds["write"] += time.perf_counter() - t0
                            report.views += len(res.get("views", ()))
                            skips += res.get("view_skips", [])
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
    all_skips = [{"source": printable(u.source), "split": u.split, "kind": "unpaired", "reason": printable(u.reason)}
                 for u in scan.unpaired]
    for e in plan:
        all_skips += skipped[e["file"]]
    aliases = {a: list(m) for a, m in dataset.aliases.items() if all(s in {e["split"] for e in plan} for s in m)}
    from densereg_data.version import __version__

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
    # a view skipped for its pose or hidden area is expected (a turned face has fewer views): only faces count
    faces_skipped = [s for s in all_skips if "view_delta" not in s]
    if len(faces_skipped) > cfg.max_skip_fraction * candidates:
        kinds: dict[str, int] = {}
        for s in faces_skipped:
            kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
        raise BuildError(
            f"{len(faces_skipped)} of {candidates} samples skipped ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
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
