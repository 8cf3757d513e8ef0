"""The contract of the two halves, in FRESH interpreters: densereg_net reads real shards (written by
densereg_data.format's writer), trains, evaluates and predicts with torch + the light layer of
densereg_data only (the heavy stack made unimportable, as on a training machine, and absent from
sys.modules afterwards), and `import densereg_data` alone pulls nothing heavy."""

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("menpo", "menpo3d", "numba", "scipy", "trimesh", "pyrender", "vtk")
HERE = Path(__file__).resolve().parent

NET_RUN = """
import json, sys
from pathlib import Path


class NotInstalled:  # a training machine: pip install -e . plus torch, none of the heavy stack
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError(name + " is not installed on a training machine")


sys.meta_path.insert(0, NotInstalled())
import numpy as np
import torch
import densereg_net
from densereg_data.format import verify
from densereg_net import Predictor, TrainConfig
from densereg_net.evaluate import evaluate
from densereg_net.train import train
sys.path.insert(0, {here!r})
from net_fakes import write_shards          # densereg_data.format.ShardWriter / write_index / write_template

torch.set_num_threads(1)
root = Path({tmp!r})
shards = write_shards(root / "shards", {{"train": 2, "val": 2}})
verify(shards)
r = train(TrainConfig(shards=str(shards), out=str(root / "run"), epochs=1, batch_size=2, width=8, num_workers=0,
                      device="cpu"))
rep = evaluate(root / "run" / "best.pt", shards, device="cpu")
image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
pred = Predictor(root / "run" / "best.pt", device="cpu").predict(image, bbox=(10, 5, 40, 35))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"steps": r.epoch, "split": rep["split"], "samples": rep["samples"],
                  "landmarks": list(pred.landmarks.shape), "heavy": heavy,
                  "cli": "densereg_cli" in sys.modules}}))
"""


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_net_reads_trains_evaluates_predicts_without_the_heavy_stack(tmp_path):
    out = json.loads(_run(NET_RUN.format(here=str(HERE), tmp=str(tmp_path), heavy=HEAVY)))
    assert out == {"steps": 1, "split": "val", "samples": 2, "landmarks": [68, 2], "heavy": [], "cli": False}


def test_import_densereg_data_alone_pulls_nothing_heavy():
    code = f"import sys, densereg_data; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    assert _run(code) == "[]"
