"""Datasets: folder layouts of face images with 68-point landmark files, registered by name.

A dataset scans its root and returns a `Scan`: the `SampleRef`s to label, sorted by (split, source),
and the `Unpaired` files it found but cannot use (a ``.pts`` without its image, an image without its
``.pts``); a build writes the latter to ``skipped.jsonl`` instead of failing.

    >>> from densereg_data.build.datasets import make_dataset
    >>> scan = make_dataset("pts", root="faces/", val_fraction=0.2, seed=0).scan("all")

Pairing: an image and a landmark file pair when they are in the same folder and have the same stem
(``image_092 _01.png`` with ``image_092 _01.pts``). With several images of one stem the first suffix of
`IMAGE_SUFFIXES` wins; with both ``.pts`` and ``.ljson``, ``.pts`` wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from densereg_data.errors import BuildError
from densereg_data.io.annotations import FaceAnnotation
from densereg_data.io.images import IMAGE_SUFFIXES
from densereg_data.io.landmarks import LANDMARK_SUFFIXES

__all__ = ["SampleRef", "Unpaired", "Scan", "Dataset", "DATASETS", "register_dataset", "make_dataset", "pair_files"]


@dataclass(frozen=True)
class SampleRef:
    """One sample to label.

    image: absolute path (None only in a fit-only run's annotations, `Dataset.annotations`); landmarks: the landmark file's absolute path, or None when the dataset read
    its annotation already (`annotation`, a `FaceAnnotation` with per-point states: datasets whose
    files hold many faces, or visibility). source: the image path relative to the dataset root, POSIX
    separators (unique within a dataset). split: the split it belongs to.
    """

    image: Path | None
    landmarks: Path | None
    source: str
    split: str
    annotation: FaceAnnotation | None = None

    def __post_init__(self) -> None:
        if not self.source or not self.split:
            raise BuildError(f"a sample needs a source and a split, got {self.source!r}, {self.split!r}")
        if (self.landmarks is None) == (self.annotation is None):
            raise BuildError(f"sample {self.source!r} needs a landmark file or an annotation, not both or neither")


@dataclass(frozen=True)
class Unpaired:
    """A file that could not become a sample: source (relative path), split, reason (one line)."""

    source: str
    split: str
    reason: str


@dataclass(frozen=True)
class Scan:
    """What a dataset found: samples sorted by (split, source), and the unpaired files."""

    samples: tuple[SampleRef, ...]
    unpaired: tuple[Unpaired, ...]

    def __post_init__(self) -> None:
        keys = [(s.split, s.source) for s in self.samples]
        if keys != sorted(keys) or len(set(s.source for s in self.samples)) != len(keys):
            raise BuildError("a dataset's samples must be sorted by (split, source) and unique")

    def counts(self) -> dict[str, int]:
        """Samples per split."""
        out: dict[str, int] = {}
        for s in self.samples:
            out[s.split] = out.get(s.split, 0) + 1
        return out


class Dataset:
    """Base of a registered dataset. Subclasses set `name`, `splits`, `aliases` and implement `_scan`."""

    name: str = ""
    #: Splits a scan may produce, in their natural order.
    splits: tuple[str, ...] = ()
    #: Names a reader or `scan` accepts that stand for several splits.
    aliases: dict[str, tuple[str, ...]] = {}
    #: For people (`densereg-data datasets`): what --root points at, and the data's terms.
    layout: str = ""
    licence: str = ""
    subsets: tuple[str, ...] = ()

    def __init__(self, root: str | os.PathLike | None, **options) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.options = options

    def resolve_split(self, split: str) -> tuple[str, ...]:
        """A split name, an alias or ``"all"`` -> the splits it stands for."""
        if split == "all":
            return self.available_splits()
        if split in self.aliases:
            return self.aliases[split]
        if split in self.splits:
            return (split,)
        valid = ", ".join(["all", *self.splits, *self.aliases])
        raise BuildError(f"dataset {self.name!r} has no split {split!r} (valid: {valid})")

    def available_splits(self) -> tuple[str, ...]:
        """The splits present under the root (all of `splits` unless a layout says otherwise)."""
        return self.splits

    def scan(self, split: str = "all") -> Scan:
        """Find the samples of `split` (a split, an alias or "all"), sorted by (split, source)."""
        wanted = self.resolve_split(split)
        samples, unpaired = self._scan(wanted)
        samples = sorted(samples, key=lambda s: (s.split, s.source))
        unpaired = sorted(unpaired, key=lambda u: (u.split, u.source))
        return Scan(tuple(samples), tuple(unpaired))

    def _scan(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        raise NotImplementedError

    def annotations(self, split: str = "all") -> Scan:
        """Every annotated face of `split`, with or without its image (a fit-only run's input); for a
        layout of image + landmark-file pairs, the pairs."""
        return self.scan(split)


#: name -> Dataset subclass; filled by `register_dataset`.
DATASETS: dict[str, type[Dataset]] = {}


def register_dataset(name: str) -> Callable[[type[Dataset]], type[Dataset]]:
    """Class decorator: register a `Dataset` subclass under `name`."""

    def deco(cls: type[Dataset]) -> type[Dataset]:
        if name in DATASETS:
            raise BuildError(f"dataset {name!r} is registered twice")
        cls.name = name
        DATASETS[name] = cls
        return cls

    return deco


def make_dataset(name: str, root: str | os.PathLike | None = None, **options) -> Dataset:
    """Instantiate the dataset registered as `name`; an unknown name lists the valid ones."""
    try:
        cls = DATASETS[name]
    except KeyError:
        raise BuildError(f"unknown dataset {name!r} (valid: {', '.join(sorted(DATASETS))})") from None
    return cls(root, **options)


def require_dir(root: Path | None, dataset: str) -> Path:
    """The root folder, or a one-line `BuildError` saying what is wrong with it."""
    if root is None:
        raise BuildError(f"dataset {dataset!r} needs --root")
    if not root.exists():
        raise BuildError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise BuildError(f"dataset root is not a folder: {root}")
    return root


def _walk(folder: Path) -> Iterable[Path]:
    """Every file under `folder`, deterministic order, following no symlinked folders."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def pair_files(folder: Path, root: Path, split: str | Callable[[str], str]) -> tuple[list[SampleRef], list[Unpaired]]:
    """Pair images and landmark files under `folder` (recursively) by folder + stem.

    split: a split name, or a function of the pair's key (relative path without suffix) -> split.
    Sources are relative to `root`.
    """
    images: dict[str, list[Path]] = {}
    marks: dict[str, list[Path]] = {}
    for path in _walk(folder):
        suffix = path.suffix.lower()
        key = path.relative_to(root).with_suffix("").as_posix()
        if suffix in IMAGE_SUFFIXES:
            images.setdefault(key, []).append(path)
        elif suffix in LANDMARK_SUFFIXES:
            marks.setdefault(key, []).append(path)
    rank_i = {s: i for i, s in enumerate(IMAGE_SUFFIXES)}
    rank_l = {s: i for i, s in enumerate(LANDMARK_SUFFIXES)}
    samples: list[SampleRef] = []
    unpaired: list[Unpaired] = []
    for key in sorted(set(images) | set(marks)):
        split_name = split(key) if callable(split) else split
        imgs = sorted(images.get(key, []), key=lambda p: (rank_i[p.suffix.lower()], p.name))
        lms = sorted(marks.get(key, []), key=lambda p: (rank_l[p.suffix.lower()], p.name))
        if imgs and lms:
            samples.append(SampleRef(imgs[0], lms[0], imgs[0].relative_to(root).as_posix(), split_name))
        elif lms:
            rel = lms[0].relative_to(root).as_posix()
            unpaired.append(Unpaired(rel, split_name, f"no image for landmark file {rel} (looked for {key}{{.jpg,.png,...}})"))
        else:
            rel = imgs[0].relative_to(root).as_posix()
            unpaired.append(Unpaired(rel, split_name, f"no landmark file for image {rel} (looked for {key}.pts or .ljson)"))
    return samples, unpaired


# Register the built-in datasets (light modules: no menpo import until a scan needs it).
from densereg_data.build.datasets import folder as _folder  # noqa: E402,F401
from densereg_data.build.datasets import ibug300w as _ibug300w  # noqa: E402,F401
from densereg_data.build.datasets import sample as _sample  # noqa: E402,F401
from densereg_data.build.datasets import annotated as _annotated  # noqa: E402,F401
