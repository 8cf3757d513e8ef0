"""`pts`: any folder tree of image + ``.pts``/``.ljson`` pairs, split into train/val by a stable hash.

Convention: train/val split
    A pair's key is its path relative to the root without the suffix (``sub/img_01``; undecodable file-name
    bytes hashed as the bytes they are). It goes to
    ``val`` when ``int(sha256(f"{seed}:{key}")[:16], 16) / 2**64 < val_fraction``, else ``train``:
    the split of a file never depends on which other files exist, so adding faces keeps old ones put.
"""

from __future__ import annotations

import hashlib

from densereg_data.build.datasets import Dataset, SampleRef, Unpaired, pair_files, register_dataset, require_dir
from densereg_data.errors import BuildError


def val_score(key: str, seed: int) -> float:
    """The pair key's position in [0, 1) for the train/val split (see the module's Convention)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8", "surrogateescape")).hexdigest()
    return int(digest[:16], 16) / 2.0**64


@register_dataset("pts")
class FolderDataset(Dataset):
    """Options: val_fraction (0.2; 0 puts everything in train), seed (0)."""

    splits = ("train", "val")
    aliases = {"full": ("train", "val")}
    layout = "any folder tree of images with a .pts or .ljson beside each (same stem), 68 iBUG points, 1-based .pts"
    licence = "yours"

    def __init__(self, root, *, val_fraction: float = 0.2, seed: int = 0, **options) -> None:
        super().__init__(root, **options)
        if not 0.0 <= float(val_fraction) < 1.0:
            raise BuildError(f"--val-fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)

    def _split_of(self, key: str) -> str:
        return "val" if val_score(key, self.seed) < self.val_fraction else "train"

    def _scan(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        root = require_dir(self.root, self.name).resolve()
        samples, unpaired = pair_files(root, root, self._split_of)
        return [s for s in samples if s.split in splits], [u for u in unpaired if u.split in splits]
