"""densereg_net: a compact fully convolutional DenseReg network (quantized U-V regression, parts, landmarks).

Needs torch and the light layer of densereg_data (numpy, h5py, Pillow): shards, template facts,
conventions, crops, images and .pts files are read through densereg_data's format, io and geometry
modules, never through a copy. The functions `train` and `evaluate` live in the modules of the same
name:

    >>> from densereg_net import Predictor, ShardDataset, TrainConfig
    >>> from densereg_net.train import train
    >>> from densereg_net.evaluate import evaluate
    >>> ds = ShardDataset("shards/", "train")                       # torch tensors, every schema field
    >>> result = train(TrainConfig(shards="shards/", out="runs/a", epochs=30))
    >>> evaluate("runs/a/best.pt", "shards/")                       # val, else test, else train
    >>> Predictor("runs/a/best.pt").predict("face.jpg", bbox=(40, 30, 200, 220)).landmarks
"""

from __future__ import annotations

from densereg_net.augment import AugmentConfig, SeededAugment
from densereg_net.config import TrainConfig
from densereg_net.data import DeviceData, ShardDataset
from densereg_net.model import HEADS, build_model
from densereg_net.predict import Prediction, Predictor
from densereg_net.train import TrainResult

__all__ = [
           "HEADS",
           "AugmentConfig",
           "DeviceData",
           "Prediction",
           "Predictor",
           "SeededAugment",
           "ShardDataset",
           "TrainConfig",
           "TrainResult",
           "build_model",
]
