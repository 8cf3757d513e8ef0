"""densereg_net keeps its own copy of the shared constants: pin that it matches densereg_data, and
that densereg_net never imports the label stack."""

import subprocess
import sys

import pytest
import torch

from densereg_net import conventions as net
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)


def test_constants_match_densereg_data():
    data = pytest.importorskip("densereg_data.conventions")
    for name in ("PTS_ORIGIN", "N_LANDMARKS", "DEFAULT_K", "PART_NAMES", "PART_FLIP", "OUTER_EYE_CORNERS", "LANDMARK_FLIP"):
        assert getattr(net, name) == getattr(data, name), name
    u = torch.linspace(0, 1, 1001, dtype=torch.float64)
    b, r = net.encode_bins(u, 10)
    db, dr = data.encode_bins(u.numpy(), 10)
    assert (b.numpy() == db).all() and abs(r.numpy() - dr).max() < 1e-12


def test_densereg_net_imports_no_label_stack():
    code = ("import sys, densereg_net.train, densereg_net.evaluate, densereg_net.predict, densereg_net.bench, "
            "densereg_net.data; bad = [m for m in ('densereg_data', 'scipy', 'menpo', 'menpo3d', 'trimesh', "
            "'pyrender', 'densereg_cli') if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
