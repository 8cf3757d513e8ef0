import torch
from net_fakes import one_thread, shards, write_shards  # noqa: F401  (fixtures)

from densereg_data.conventions import LANDMARK_FLIP, PART_FLIP
from densereg_data.format import ShardIndex, read_split
from densereg_net.augment import (
    AugmentConfig,
    SeededAugment,
    augment_batch,
    flip_batch,
    identity_params,
    sample_params,
    to_float_batch,
)
from densereg_net.data import DeviceData, ShardDataset, epoch_batches, iterate


def _batch(shards, n=3):
    a = read_split(ShardIndex.open(shards), "train")
    return to_float_batch(*(torch.from_numpy(a[k][:n]) for k in ("image", "uv", "parts", "landmarks")))


def test_flip_tables_are_involutions():
    assert [PART_FLIP[PART_FLIP[i]] for i in range(9)] == list(range(9))
    assert [LANDMARK_FLIP[LANDMARK_FLIP[i]] for i in range(68)] == list(range(68))
    assert PART_FLIP[1] == 2 and PART_FLIP[3] == 4 and PART_FLIP[5] == 5


def test_flip_twice_is_identity(shards):
    b = _batch(shards)
    flip = torch.tensor([True, False, True])
    back = flip_batch(flip_batch(b, flip), flip)
    for k in ("image", "uv", "parts"):
        assert torch.equal(back[k], b[k]), k
    assert torch.allclose(back["landmarks"], b["landmarks"], atol=1e-5, rtol=0)  # S - 1 - x in float32


def test_flipped_sample_mirrors_u_swaps_parts_and_landmarks(shards):
    b = _batch(shards, 1)
    f = flip_batch(b, torch.tensor([True]))
    S = b["image"].shape[-1]
    parts, fparts = b["parts"][0], f["parts"][0]
    # pixel (row, col) of the flip holds what (row, S - 1 - col) held, with u -> 1 - u, parts swapped
    assert torch.equal(fparts, torch.tensor(PART_FLIP)[parts.flip(-1)])
    fg = parts.flip(-1) > 0
    assert torch.equal(f["uv"][0, 0][fg], 1 - b["uv"][0, 0].flip(-1)[fg])
    assert torch.equal(f["uv"][0, 1], b["uv"][0, 1].flip(-1))
    assert (f["uv"][0][:, ~fg] == 0).all()
    assert (fparts == 1).sum() == (parts == 2).sum() and (fparts == 3).sum() == (parts == 4).sum()
    lm, flm = b["landmarks"][0], f["landmarks"][0]
    assert torch.allclose(flm[36], torch.stack([S - 1 - lm[45, 0], lm[45, 1]]))
    assert torch.equal(f["image"][0], b["image"][0].flip(-1))
    # on the synthetic faces u still grows left to right after the flip
    row = fparts[S // 2] > 0
    u = f["uv"][0, 0, S // 2][row]
    assert (u[1:] >= u[:-1]).all()


def test_identity_warp_is_exact(shards):
    b = _batch(shards)
    out = augment_batch(b, identity_params(3))
    for k in b:
        assert torch.allclose(out[k].float(), b[k].float(), atol=1e-5), k


def test_random_warp_keeps_labels_exact(shards):
    b = _batch(shards)
    p = sample_params(3, 32, torch.Generator().manual_seed(0), AugmentConfig(flip_prob=0.0))
    out = augment_batch(b, p)
    for i in range(3):
        # nearest sampling: every output (u, v, part) triple exists in the input
        src = set(map(tuple, torch.cat([b["uv"][i], b["parts"][i][None].float()]).flatten(1).T.tolist())) | {(0.0, 0.0, 0.0)}
        dst = set(map(tuple, torch.cat([out["uv"][i], out["parts"][i][None].float()]).flatten(1).T.tolist()))
        assert dst <= src
    A = p.A
    assert torch.allclose(out["landmarks"], b["landmarks"] @ A[:, :, :2].transpose(1, 2) + A[:, :, 2:].transpose(1, 2), atol=1e-4)


def test_label_warp_moves_with_landmarks(shards):
    """Pure translation by 3 px right, 2 px down: the label at (x, y) appears at (x + 3, y + 2)."""
    b = _batch(shards, 1)
    p = identity_params(1)
    p.A[0, 0, 2], p.A[0, 1, 2] = 3.0, 2.0
    out = augment_batch(b, p)
    assert torch.equal(out["parts"][0, 2:, 3:], b["parts"][0, :-2, :-3])
    assert torch.allclose(out["landmarks"][0], b["landmarks"][0] + torch.tensor([3.0, 2.0]))


def test_stream_and_memory_paths_give_the_same_batches(tmp_path):
    """The DataLoader path (SeededAugment as ShardDataset's transform, 2 workers) and the on-device path
    (SeededAugment.batch) yield the same number of batches, each with the same samples, augmented alike."""
    root = write_shards(tmp_path / "s", {"train": 7})
    index = ShardIndex.open(root)
    ds = ShardDataset(root, "train", SeededAugment(AugmentConfig(), seed=3))
    mem = DeviceData(index, "train", torch.device("cpu"), SeededAugment(AugmentConfig(), seed=3))
    batches = epoch_batches(len(ds), 2, epoch=1, seed=3)
    assert len(batches) == 3  # 7 samples, batch 2, drop-last
    stream = list(iterate(ds, batches, 1, torch.device("cpu"), num_workers=2))
    memory = list(iterate(mem, batches, 1, torch.device("cpu")))
    assert len(stream) == len(memory) == len(batches)
    for ids, a, b in zip(batches, stream, memory):
        assert a["index"].tolist() == b["index"].tolist() == ids
        for k in ("image", "uv", "parts", "landmarks"):
            assert a[k].shape == b[k].shape and torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    # and the augmentation really ran: the first batch differs from the raw samples
    raw = ShardDataset(root, "train")[batches[0][0]]
    assert not torch.allclose(stream[0]["image"][0], raw["image"], atol=1e-3)


def test_epoch_batches_split_across_ranks():
    b0 = epoch_batches(10, 2, 0, 0, world=2, rank=0)
    b1 = epoch_batches(10, 2, 0, 0, world=2, rank=1)
    assert len(b0) == len(b1) == 2
    flat = sum(b0, []) + sum(b1, [])
    assert len(set(flat)) == 8
    assert epoch_batches(10, 2, 0, 0) != epoch_batches(10, 2, 1, 0)
