import numpy as np
import torch
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)

from densereg_data.conventions import decode_bins, encode_bins
from densereg_net.losses import targets
from densereg_net.model import build_model


def test_encode_decode_exact_including_ends():
    k = 10
    u = torch.tensor([0.0, 1e-7, 0.05, 0.1, 0.1 + 1e-6, 0.5, 0.999, 1.0], dtype=torch.float64)
    b, r = encode_bins(u, k)
    assert b.tolist()[0] == 1 and b.tolist()[-1] == k  # u = 0 -> bin 1, u = 1 -> bin K (residual 1)
    assert r[-1] == 1.0 and r[0] == 0.0
    assert ((b >= 1) & (b <= k)).all() and ((r >= 0) & (r <= 1)).all()
    assert torch.allclose(decode_bins(b, r, k), u, atol=1e-15, rtol=0)
    # the formula of the brief, literally
    ref = np.minimum(np.floor(k * u.numpy()), k - 1) + 1
    assert (b.numpy() == ref).all()


def test_encode_decode_dense_grid():
    u = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for k in (1, 7, 10, 16):
        b, r = encode_bins(u, k)
        assert torch.allclose(decode_bins(b, r, k), u, atol=1e-14, rtol=0)


def test_targets_background_is_class_0():
    uv = torch.tensor([[[[0.0, 0.35]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    parts = torch.tensor([[[0, 5]]])
    t = targets({"uv": uv, "parts": parts}, 10)
    assert t["u_bin"].tolist() == [[[0, 4]]] and t["v_bin"].tolist() == [[[0, 10]]]


def test_quantized_head_decodes_true_bins_and_residuals_exactly():
    k = 10
    model = build_model("quantized", k, width=8)
    u = torch.tensor([[0.0, 0.05, 0.55, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[0.3, 0.99, 0.1, 0.7]]).view(1, 1, 2, 2)
    out = {}
    for a, x in zip("uv", (u, v)):
        b, r = encode_bins(x[:, 0], k)
        out[f"{a}_cls"] = torch.nn.functional.one_hot(b, k + 1).permute(0, 3, 1, 2).float()  # (B, K+1, H, W)
        res = torch.zeros(1, k, 2, 2)
        res.scatter_(1, (b - 1).unsqueeze(1), r.unsqueeze(1))
        out[f"{a}_res"] = res
    got = model.head.decode_uv(out)
    assert torch.allclose(got, torch.cat([u, v], 1), atol=1e-6)
