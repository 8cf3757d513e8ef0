"""Datasets whose annotations come in their authors' own files, read by one reader module each.

A reader module (``wflw``, ``cofw68``, ``merlrav``, ...) exposes ``read_annotations(root, split,
images) -> (list[FaceAnnotation], list[Problem])`` and the constants ``SPLITS``, ``SUBSETS``,
``LAYOUT``, ``LICENCE`` and ``COORDINATE_BASE``; `AnnotatedDataset` turns it into a registered
dataset: a build labels the faces whose image is at hand (the others are recorded as unpaired), a
fit-only run (`densereg_data.build.fitrun`) takes every face. Faces of another landmark scheme are
fitted on their 68 iBUG points (`io.annotations.as_ibug68`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from densereg_data.build.datasets import Dataset, SampleRef, Scan, Unpaired, register_dataset, require_dir
from densereg_data.io.annotations import as_ibug68

#: registry name -> reader module (in this package), registered when the module exists.
READERS = {
    "wflw": "wflw",
    "cofw68": "cofw68",
    "coco-wholebody": "coco_wholebody",
    "merlrav": "merlrav",
    "aflw2000-3d": "aflw2000_3d",
    "300w-lp": "lp300w",
    "300vw": "vw300",
}


class AnnotatedDataset(Dataset):
    """Options: images (a folder where the images are when they are not under the root)."""

    reader = None

    def __init__(self, root: str | os.PathLike | None, *, images: str | os.PathLike | None = None, **options) -> None:
        super().__init__(root, **options)
        self.images = Path(images).expanduser() if images else None

    def available_splits(self) -> tuple[str, ...]:
        """The splits whose files are under the root (all of them when the reader cannot tell)."""
        probe = getattr(self.reader, "available_splits", None)
        if probe is None or self.root is None or not self.root.is_dir():
            return self.splits
        return tuple(probe(self.root.resolve()))

    def _read(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        root = require_dir(self.root, self.name).resolve()
        refs, unpaired = [], []
        for split in splits:
            found, problems = self.reader.read_annotations(root, split, self.images)
            refs += [SampleRef(a.image, None, a.source, split, as_ibug68(a)) for a in found]
            unpaired += [Unpaired(p.source, p.split or split, p.reason) for p in problems]
        return refs, unpaired

    def _scan(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        refs, unpaired = self._read(splits)
        where = self.images or self.root
        unpaired += [Unpaired(r.source, r.split, f"no image for {r.source} under {where}") for r in refs if r.image is None]
        return [r for r in refs if r.image is not None], unpaired

    def annotations(self, split: str = "all") -> Scan:
        refs, unpaired = self._read(self.resolve_split(split))
        return Scan(tuple(sorted(refs, key=lambda r: (r.split, r.source))),
                    tuple(sorted(unpaired, key=lambda u: (u.split, u.source))))


def _register(name: str, module_name: str) -> None:
    try:
        module = importlib.import_module(f"densereg_data.build.datasets.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"densereg_data.build.datasets.{module_name}":
            return  # not written yet
        raise
    attrs = {"reader": module, "splits": tuple(module.SPLITS), "subsets": tuple(getattr(module, "SUBSETS", ())),
             "layout": module.LAYOUT, "licence": module.LICENCE, "__doc__": module.__doc__}
    register_dataset(name)(type(f"{module_name.title()}Dataset", (AnnotatedDataset,), attrs))


for _name, _module in READERS.items():
    _register(_name, _module)
