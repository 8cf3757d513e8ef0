"""The `train` command-line options, shared by `densereg-net train` and `python -m densereg_net.train`.

Imports click only (no torch), so `--help` stays instant. Every flag defaults to None: only the
flags given override the config file and the `TrainConfig` defaults.
"""

from __future__ import annotations

import click

#: Names of `densereg_net.model.HEADS` (a test pins that they agree).
HEAD_NAMES = ["classification", "quantized", "regression"]


def train_options(f):
    opts = [
        click.argument("shards", type=click.Path(file_okay=False)),
        click.option("--out", help="Run directory (last.pt, best.pt, metrics.csv, config.json). [runs/densereg]"),
        click.option("--epochs", type=int, help="[30]"),
        click.option("--batch-size", type=int, help="Per process. [16]"),
        click.option("--lr", type=float, help="Peak AdamW learning rate. [2e-3]"),
        click.option("--weight-decay", type=float, help="[0.05]"),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[auto]"),
        click.option("--head", type=click.Choice(HEAD_NAMES), help="[quantized]"),
        click.option("--width", type=int, help="Base channel width of the encoder-decoder. [32]"),
        click.option("--data-mode", type=click.Choice(["auto", "memory", "stream"]),
                     help="memory: the whole split on the device, augmented there (auto: when it fits)."),
        click.option("--num-workers", type=int, help="DataLoader workers of the streaming path. [2]"),
        click.option("--seed", type=int, help="[0]"),
        click.option("--log-every", type=int, help="Log a line every N steps. [10]"),
        click.option("--train-split", help="[train]"),
        click.option("--val-split", help="[val]"),
        click.option("--no-augment", "augment", flag_value=False, default=None, help="Train without augmentation."),
        click.option("--stop-after-epoch", type=int, help="Stop after this epoch as if killed (continue with --resume)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON file of config values."),
        click.option("--resume", is_flag=True, help="Continue exactly from OUT/last.pt."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f
