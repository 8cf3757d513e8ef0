"""`300w`: the 300-W faces in either of the two layouts people download.

The iBUG training layout (``afw/``, ``helen/{trainset,testset}``, ``lfpw/{trainset,testset}``,
``ibug/``) gives the standard protocol's splits:

    train       = afw + helen/trainset + lfpw/trainset   (337 + 2000 + 811 = 3148)
    common      = helen/testset + lfpw/testset           (330 + 224 = 554)
    challenging = ibug                                   (135)
    full        = common + challenging                   (689; an alias, not stored twice)

The official test layout (``01_Indoor/``, ``02_Outdoor/``, 300 each) is the split ``test``. A root may
hold either layout or both; ``all`` is every split whose folders exist.
"""

from __future__ import annotations

from densereg_data.build.datasets import Dataset, SampleRef, Unpaired, pair_files, register_dataset, require_dir
from densereg_data.errors import BuildError

#: split -> folders (relative to the root) that make it up.
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
    "test": ("01_Indoor", "02_Outdoor"),
}


@register_dataset("300w")
class W300Dataset(Dataset):
    layout = "300-W as downloaded: afw/, helen/, lfpw/, ibug/ (the iBUG training layout) and/or 01_Indoor/, 02_Outdoor/"
    licence = "300-W: research use only (its images come from the web; see the 300-W site)"
    splits = ("train", "common", "challenging", "test")
    aliases = {"full": ("common", "challenging")}

    def available_splits(self) -> tuple[str, ...]:
        root = require_dir(self.root, self.name)
        found = tuple(s for s in self.splits if any((root / f).is_dir() for f in SPLIT_FOLDERS[s]))
        if not found:
            raise BuildError(
                f"no 300-W layout under {root}: expected afw/, helen/, lfpw/, ibug/ (iBUG training layout) "
                "or 01_Indoor/, 02_Outdoor/ (test layout)"
            )
        return found

    def _scan(self, splits: tuple[str, ...]) -> tuple[list[SampleRef], list[Unpaired]]:
        root = require_dir(self.root, self.name).resolve()
        samples: list[SampleRef] = []
        unpaired: list[Unpaired] = []
        for split in splits:
            folders = [root / f for f in SPLIT_FOLDERS[split] if (root / f).is_dir()]
            if not folders:
                wanted = ", ".join(f + "/" for f in SPLIT_FOLDERS[split])
                raise BuildError(f"split {split!r} of 300w needs {wanted} under {root}; none found")
            for folder in folders:
                s, u = pair_files(folder, root, split)
                samples += s
                unpaired += u
        return samples, unpaired
