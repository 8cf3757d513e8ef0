"""`densereg-net train`'s options and config resolution (click only at import: --help stays instant).

Every option defaults to None, so the options given are exactly the non-None ones; the config is
`densereg_data.config.layered_config(TrainConfig, --config, given)`: dataclass defaults <- the
JSON/TOML file (optionally its [train] table) <- the flags given.
"""

from __future__ import annotations

import click


def train_options(f):
    """The `train` command's argument and options (defaults in brackets are TrainConfig's)."""
    opts = [
        click.argument("shards", type=click.Path(file_okay=False)),
        click.option("--out", help="Run directory (last.pt, best.pt, metrics.csv, config.json). [runs/densereg]"),
        click.option("--epochs", type=int, help="0: auto, the recipe's 3,750 steps (250 epochs of 240 faces at batch 16), "
                                                 "at least 30. [0]"),
        click.option("--batch-size", type=int, help="Per process. [16]"),
        click.option("--lr", type=float, help="Peak AdamW learning rate. [2e-3]"),
        click.option("--weight-decay", type=float, help="[0.05]"),
        click.option("--device", help="auto, cpu, cuda or cuda:N. [auto]"),
        click.option("--head", help="quantized, regression or classification. [quantized]"),
        click.option("--width", type=int, help="Base channel width of the encoder-decoder. [32]"),
        click.option("--input-norm", type=click.Choice(["imagenet", "per_image"]),
                     help="Input normalisation: fixed ImageNet statistics, or each image's own (brightness, "
                          "contrast and colour cast do not matter). [per_image]"),
        click.option("--data-mode", type=click.Choice(["auto", "memory", "stream"]),
                     help="memory: the whole split on the device, augmented there (auto: when it fits)."),
        click.option("--num-workers", type=int, help="DataLoader workers of the streaming path. [2]"),
        click.option("--seed", type=int, help="[0]"),
        click.option("--log-every", type=int, help="Log a line every N steps. [10]"),
        click.option("--train-split", help="[train]"),
        click.option("--val-split", help="[val]"),
        click.option("--select-best", type=click.Choice(["auto", "val_dense", "val_loss", "train_loss"]),
                     help="What makes best.pt (lowest wins); auto: val_dense, val_loss without template.h5, "
                          "train_loss without a val split. [auto]"),
        click.option("--no-augment", "augment", flag_value=False, default=None, help="Train without augmentation."),
        click.option("--views/--originals-only", "views", default=None,
                     help="Train on the new views of a `densereg-data build --views` too, or on the original "
                          "faces only (validation always scores the originals). [--views]"),
        click.option("--stop-after-epoch", type=int, help="Stop after this epoch as if killed (continue with --resume)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="JSON or TOML file of TrainConfig values (TOML: top level or a [train] table)."),
        click.option("--resume", is_flag=True, help="Continue exactly from OUT/last.pt."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def train_config(config_file: str | None, flags: dict):
    """TrainConfig from defaults <- config file <- the flags given (the non-None ones)."""
    from densereg_data.config import layered_config
    from densereg_net.train import TrainConfig

    return layered_config(TrainConfig, config_file, {k: v for k, v in flags.items() if v is not None}, section="train")
