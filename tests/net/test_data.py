"""ShardDataset over shards written by the real writer: every schema field, exactly, as torch tensors."""

import numpy as np
import pytest
import torch
from net_fakes import MODEL_SIZE, one_thread, shards, write_shards  # noqa: F401  (fixtures)

from densereg_data.errors import ShardFormatError
from densereg_data.format import SCHEMA, open_shards, verify
from densereg_net.augment import AugmentConfig, SeededAugment
from densereg_net.data import ShardDataset


def test_the_fixture_shards_pass_verify(tmp_path):
    """The tests' shard directories come from the real writer and are valid docs/FORMAT.md shards."""
    root = write_shards(tmp_path / "s", {"train": 3, "val": 2, "test": 0})
    summary = verify(root)  # raises ShardFormatError on any deviation from the schema
    assert (summary["shards"], summary["samples"]) == (3, 5)


def test_every_schema_field_as_a_tensor_exactly(shards):
    ds = ShardDataset(shards, "train")
    raw = open_shards(shards, "train")
    assert len(ds) == len(raw) == 6
    item = ds[4]
    assert set(item) == set(SCHEMA) | {"index"} and item["index"] == 4
    r = raw[4]
    S = 32
    # training layouts: (C, S, S) float image in [0, 1] and U-V, int64 parts, float32 landmarks
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, S, S)
    assert torch.equal(item["image"], torch.from_numpy(r["image"]).permute(2, 0, 1).float() / 255)
    assert item["uv"].dtype == torch.float32 and torch.equal(item["uv"], torch.from_numpy(r["uv"].astype(np.float32)).permute(2, 0, 1))
    assert item["parts"].dtype == torch.int64 and torch.equal(item["parts"], torch.from_numpy(r["parts"]).long())
    assert item["landmarks"].dtype == torch.float32 and torch.equal(item["landmarks"], torch.from_numpy(r["landmarks"]))
    # the rest as stored
    assert item["source"] == r["source"] == "train/img004.png"
    for key, dtype, shape in [("crop_from_image", torch.float64, (2, 3)), ("source_size", torch.int32, (2,)),
                              ("fit_nme", torch.float32, ()), ("crop_from_template", torch.float64, (3, 4)),
                              ("pose", torch.float32, (3,)), ("coefficients", torch.float32, (MODEL_SIZE,))]:
        assert item[key].dtype == dtype and item[key].shape == shape, key
        assert np.array_equal(item[key].numpy(), r[key]), key
    assert item["source_size"].tolist() == [32 * 4 + 4, 32 * 5 + 8]
    assert ds[-1]["index"] == 5
    with pytest.raises(IndexError):
        ds[6]


def test_default_collate_batches_every_field(shards):
    loader = torch.utils.data.DataLoader(ShardDataset(shards, "val"), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["coefficients"].shape == (2, MODEL_SIZE)
    assert batch["source"] == ["val/img000.png", "val/img001.png"] and batch["index"].tolist() == [0, 1]


def test_transform_hook_sees_and_returns_the_item(shards):
    seen = []

    def tag(item):
        seen.append(item["index"])
        return {**item, "tag": item["source"].upper()}

    ds = ShardDataset(shards, "train", transform=tag)
    assert ds[2]["tag"] == "TRAIN/IMG002.PNG" and seen == [2]


def test_seeded_augment_as_the_transform_is_reproducible_per_epoch(shards):
    aug = SeededAugment(AugmentConfig(), seed=1)
    ds = ShardDataset(shards, "train", aug)
    plain = ShardDataset(shards, "train")
    ds.set_epoch(0)
    a0, b0 = ds[3], ds[3]
    ds.set_epoch(1)
    a1 = ds[3]
    assert torch.equal(a0["image"], b0["image"]) and not torch.equal(a0["image"], a1["image"])
    assert not torch.equal(a0["image"], plain[3]["image"])
    assert a0["source"] == plain[3]["source"] and torch.equal(a0["pose"], plain[3]["pose"])  # passed through


def test_unknown_split_is_one_format_error(shards):
    with pytest.raises(ShardFormatError, match="no split 'nope' in .* \\(valid: all, train, val\\)"):
        ShardDataset(shards, "nope")
