"""`TrainConfig`: the flat, frozen training config, every value's type and range checked.

Resolved as dataclass defaults <- config file <- flags by `densereg_data.config.layered_config` (the
CLI's ``--config``); `__post_init__` checks ranges, and the nested dicts (`augment_config`,
`loss_weights`) key by key, so a config from a file, a flag or a checkpoint is one `ConfigError` line
when it is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

from densereg_data.config import check_value
from densereg_data.errors import ConfigError
from densereg_net.augment import AugmentConfig
from densereg_net.losses import LossWeights
from densereg_net.model import DEFAULT_INPUT_NORM, HEADS, INPUT_NORMS, MAX_WIDTH

__all__ = ["AUTO_STEPS", "SELECT_BEST", "TrainConfig", "auto_epochs"]

#: The default recipe's length in optimizer steps (docs/NET.md "Training recipe"): `epochs` 0 trains
#: ceil(AUTO_STEPS / steps per epoch) epochs, at least AUTO_MIN_EPOCHS; 240 faces at batch 16 -> 250 epochs.
AUTO_STEPS = 3750
AUTO_MIN_EPOCHS = 30


def auto_epochs(steps_per_epoch: int) -> int:
    """The epochs `TrainConfig.epochs` 0 stands for, given the steps of one epoch."""
    return max(AUTO_MIN_EPOCHS, math.ceil(AUTO_STEPS / max(1, steps_per_epoch)))


#: What `TrainConfig.select_best` may say: which per-epoch number, lowest wins, makes best.pt.
SELECT_BEST = ("auto", "val_dense", "val_loss", "train_loss")


@dataclass(frozen=True)
class TrainConfig:
    """Flat training config (see the module docstring); ConfigError naming the value when one is wrong."""

    shards: str = ""
    out: str = "runs/densereg"
    epochs: int = 0  # 0: auto (`auto_epochs`: the recipe's step budget, at least AUTO_MIN_EPOCHS)
    batch_size: int = 16  # per process
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100  # capped at 10% of all steps
    grad_clip: float = 2.0
    head: str = "quantized"
    width: int = 32
    input_norm: str = DEFAULT_INPUT_NORM  # see densereg_net.model.INPUT_NORMS
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_mode: str = "auto"  # auto | memory | stream
    num_workers: int = 2
    log_every: int = 10
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = True
    views: bool = True  # train on the new views of a `--views` build too; False: the original faces only
    select_best: str = "auto"  # see SELECT_BEST; config.json holds the resolved choice
    stop_after_epoch: int = 0  # > 0: stop (as if killed) after this many epochs; for tests and budgets
    augment_config: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    loss_weights: dict = field(default_factory=lambda: LossWeights().to_dict())

    def __post_init__(self):
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(sorted(HEADS))}, got {self.head!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.data_mode not in ("auto", "memory", "stream"):
            raise ConfigError(f"data_mode must be auto, memory or stream, got {self.data_mode!r}")
        if self.select_best not in SELECT_BEST:
            raise ConfigError(f"select_best must be one of {', '.join(SELECT_BEST)}, got {self.select_best!r}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0 (0: auto), got {self.epochs}")
        for name in ("batch_size", "width", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width > MAX_WIDTH:
            raise ConfigError(f"width must be <= {MAX_WIDTH}, got {self.width}")
        for name in ("lr", "weight_decay", "grad_clip", "warmup_steps", "num_workers", "stop_after_epoch"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name, cls in (("augment_config", AugmentConfig), ("loss_weights", LossWeights)):
            given = getattr(self, name)
            valid = [f.name for f in dataclasses.fields(cls)]
            if not isinstance(given, dict):
                raise ConfigError(f"{name} must be an object of {', '.join(valid)}, got {given!r}"[:300])
            if set(given) - set(valid):
                raise ConfigError(f"{name} keys must be among {', '.join(valid)}, got {sorted(given)}"[:300])
            for key, value in given.items():
                check_value(cls, key, value, name)

    def to_dict(self) -> dict:
        return asdict(self)
