"""`densereg-net`: train, evaluate, predict and benchmark the DenseReg network.

Thin front ends: parse, build a config, call one library function. Heavy imports (torch) inside
commands, so --help is instant.
"""

from __future__ import annotations

import json
from typing import Sequence

import click

from densereg_cli.common import run_group, setup_logging, verbosity_options
from densereg_net.options import HEAD_NAMES as HEADS, train_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    """DenseReg network: fully convolutional U-V regression (quantized), parts and landmarks."""
    setup_logging(verbose, quiet)


@cli.command("train")
@train_options
def train_cmd(resume: bool, **flags) -> None:
    """Train on SHARDS (for several GPUs: torchrun --nproc-per-node G -m densereg_net.train SHARDS ...)."""
    from densereg_net.train import config_from_options, train

    train(config_from_options(**flags), resume=resume)


@cli.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("shards", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Report directory (report.json, CED PNGs, sheet.png).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def eval_cmd(checkpoint, shards, split, out, batch_size, device) -> None:
    """Score CHECKPOINT on a split of SHARDS: landmark NME/AUC/failures, dense error, part mIoU."""
    from densereg_net.evaluate import evaluate

    r = evaluate(checkpoint, shards, split, out, batch_size, device)
    b = r["mean_shape_baseline"]["landmarks"]
    click.echo(f"{split} ({r['samples']} images, head {r['head']}): NME {r['landmarks']['nme']:.4f} | "
               f"AUC@0.08 {r['landmarks']['auc@0.08']:.4f} | failure {r['landmarks']['failure_rate']:.3f} | "
               f"dense {r['dense']['error']:.4f} (AUC@0.1 {r['dense']['auc@0.1']:.4f}) | part mIoU {r['parts']['miou']:.4f} || "
               f"mean shape: NME {b['nme']:.4f} AUC@0.08 {b['auc@0.08']:.4f} failure {b['failure_rate']:.3f}")


@cli.command("predict")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--landmarks", "landmarks_path", type=click.Path(dir_okay=False), help=".pts landmarks (1-based) giving the crop.")
@click.option("--bbox", help="Face box X0,Y0,X1,Y1 (0-based pixels) giving the crop.")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def predict_cmd(checkpoint, image, landmarks_path, bbox, out, device) -> None:
    """Predict IUV, an overlay and 68 landmarks (.pts) for the face in IMAGE."""
    from densereg_net.predict import parse_bbox, predict

    r = predict(checkpoint, image, out, landmarks_path, parse_bbox(bbox) if bbox else None, device)
    for f in r["files"]:
        click.echo(f)


@cli.command("bench")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--batch-size", type=int, help="[32 on CUDA, 8 on CPU]")
@click.option("--head", type=click.Choice(HEADS), default="quantized", show_default=True)
@click.option("--iters", type=int, default=5, show_default=True)
@click.option("--warmup", type=int, default=2, show_default=True)
def bench_cmd(device, size, batch_size, head, iters, warmup) -> None:
    """Training and inference throughput (images/s) and peak memory of the default model."""
    from densereg_net.bench import bench

    click.echo(json.dumps(bench(device, size, batch_size, head, warmup=warmup, iters=iters)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `densereg-net` console script."""
    return run_group(cli, argv, "densereg-net")


if __name__ == "__main__":
    raise SystemExit(main())
