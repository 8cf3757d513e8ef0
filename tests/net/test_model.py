import pytest
import torch
import torch.nn.functional as F
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)

from densereg_data.conventions import N_PARTS
from densereg_data.errors import ConfigError
from densereg_net.losses import compute_loss
from densereg_net.model import HEADS, build_model, get_head

HEAD_NAMES = sorted(HEADS)


def test_head_registry():
    assert HEAD_NAMES == ["classification", "quantized", "regression"]
    with pytest.raises(ConfigError, match="valid heads: classification, quantized, regression"):
        get_head("nope")


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_forward_shapes_no_nan(head):
    torch.manual_seed(0)
    k = 10
    model = build_model(head, k, width=8).eval()
    out = model(torch.rand(2, 3, 32, 32))
    expected = {
        "quantized": {"u_cls": k + 1, "v_cls": k + 1, "u_res": k, "v_res": k, "parts": N_PARTS},
        "classification": {"u_cls": k + 1, "v_cls": k + 1, "parts": N_PARTS},
        "regression": {"uv": 2, "parts": N_PARTS},
    }[head]
    assert {n: t.shape for n, t in out.items()} == {n: (2, c, 32, 32) for n, c in expected.items()}
    assert all(torch.isfinite(t).all() for t in out.values())
    pred = model.predict(torch.rand(2, 3, 32, 32))
    assert pred["uv"].shape == (2, 2, 32, 32) and pred["parts"].shape == (2, 32, 32)
    assert torch.isfinite(pred["uv"]).all() and pred["uv"].min() >= 0 and pred["uv"].max() <= 1


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_per_image_input_norm_ignores_exposure_and_colour_cast(head):
    """per_image: an over-exposed, low-contrast, orange-cast copy of an image gives the same output;
    imagenet (fixed statistics) does not."""
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    gain, offset = torch.tensor([0.4, 0.3, 0.2]).view(1, 3, 1, 1), torch.tensor([0.55, 0.45, 0.2]).view(1, 3, 1, 1)
    washed = image * gain + offset  # still in [0, 1]
    assert washed.min() >= 0 and washed.max() <= 1
    for norm, same in (("per_image", True), ("imagenet", False)):
        torch.manual_seed(0)
        model = build_model(head, 10, width=8, input_norm=norm).eval()
        a, b = model(image), model(washed)
        close = all(torch.allclose(a[n], b[n], atol=1e-4) for n in a)
        assert close == same, norm


def test_per_image_input_norm_keeps_a_flat_image_finite():
    model = build_model("quantized", 10, width=8, input_norm="per_image").eval()
    out = model(torch.full((1, 3, 32, 32), 0.7))
    assert all(torch.isfinite(t).all() for t in out.values())


def test_unknown_input_norm_is_a_config_error():
    with pytest.raises(ConfigError, match="input_norm must be one of imagenet, per_image, got 'zscore'"):
        build_model("quantized", 10, width=8, input_norm="zscore")
    from densereg_net.config import TrainConfig
    with pytest.raises(ConfigError, match="input_norm must be one of"):
        TrainConfig(input_norm="zscore")


def test_test_time_flip_is_mirror_equivariant():
    """predict(flip=True) of a mirrored image is the mirror of predict(flip=True): left and right parts
    swapped, u -> 1 - u; without flip, predict is the plain argmax and decode of one forward pass. The
    network is replaced by fixed random 3x3 filters (not mirror-symmetric, soft part scores with every
    part present), so what is tested is predict's own mapping."""
    from densereg_data.conventions import PART_FLIP
    torch.manual_seed(0)
    model = build_model("regression", 10, width=8).eval()
    w_parts, w_uv = torch.randn(N_PARTS, 3, 3, 3), torch.randn(2, 3, 3, 3)
    model.forward = lambda image: {"parts": 3 * F.conv2d(image - 0.5, w_parts, padding=1),
                                   "uv": F.conv2d(image - 0.5, w_uv, padding=1)}
    image = torch.rand(2, 3, 32, 32)
    a, b = model.predict(image, flip=True), model.predict(image.flip(-1), flip=True)
    swap = torch.tensor(PART_FLIP)
    assert set(a["parts"].unique().tolist()) == set(range(N_PARTS))
    assert torch.equal(b["parts"], swap[a["parts"]].flip(-1)) and torch.equal(b["fg"], a["fg"].flip(-1))
    fg = b["fg"].unsqueeze(1).expand(-1, 2, -1, -1)
    mirrored_uv = torch.stack([1 - a["uv"][:, 0], a["uv"][:, 1]], 1).flip(-1)
    assert torch.allclose(b["uv"][fg], mirrored_uv[fg], atol=1e-5)
    plain = model.predict(image)
    assert torch.equal(plain["parts"], model(image)["parts"].argmax(1))
    assert (plain["parts"] != a["parts"]).float().mean() > 0.05  # the mirror pass changed the answer


def test_default_model_is_a_few_million_parameters():
    from densereg_net.model import count_parameters
    assert 1e6 < count_parameters(build_model()) < 8e6


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_twenty_steps_on_one_batch_lower_the_loss(head, shards):
    from densereg_data.format import ShardIndex, read_split
    from densereg_net.augment import to_float_batch
    arrays = read_split(ShardIndex.open(shards), "train")
    batch = to_float_batch(*(torch.from_numpy(arrays[k][:4]) for k in ("image", "uv", "parts", "landmarks")))
    torch.manual_seed(0)
    model = build_model(head, 10, width=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss, _ = compute_loss(head, model(batch["image"]), batch, 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_part_dice_counts_every_part_alike_however_small():
    from densereg_net.losses import part_dice_loss

    parts = torch.zeros(2, 32, 32, dtype=torch.long)
    parts[:, 4:28, 4:28] = 8  # rest of face: big
    parts[:, 10:12, 8:11] = 3  # an eye: 6 pixels
    exact = torch.nn.functional.one_hot(parts, 9).permute(0, 3, 1, 2).float() * 50
    assert float(part_dice_loss(exact, parts)) < 0.01
    no_eye = exact.clone()
    no_eye[:, 8][parts == 3] = 50  # the eye predicted as rest of face: CE barely moves, Dice loses that part
    no_eye[:, 3] = 0
    ce = torch.nn.functional.cross_entropy
    assert float(ce(no_eye, parts)) < 1.0 and float(part_dice_loss(no_eye, parts)) > 0.1
