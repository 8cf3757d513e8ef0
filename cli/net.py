"""`densereg-net`: train, evaluate, predict and benchmark the DenseReg network.

Thin front ends: parse, build a config, call one library function. Heavy imports (torch) inside
commands, so --help is instant. For several GPUs (DDP, one process per GPU):

    torchrun --nproc-per-node G -m densereg_cli.net train SHARDS --out runs/NAME ...
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import click
from densereg_cli.common import run_group, setup_logging, verbosity_options
from densereg_cli.net_predict import parse_bbox
from densereg_cli.net_train import train_config, train_options

#: `eval` and `predict`: test-time flip (`densereg_net.model.DenseRegNet.predict`).
FLIP_OPTION = click.option("--flip", is_flag=True,
                           help="Test-time flip: average the prediction with the mirror image's (2x the time).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    """DenseReg network: fully convolutional U-V regression (quantized), parts and landmarks."""
    setup_logging(verbose, quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only rank 0 reports progress
        logging.getLogger().setLevel(logging.WARNING)


@cli.command("train")
@train_options
def train_cmd(resume: bool, config_file: str | None, **flags) -> None:
    """Train on SHARDS (for several GPUs: torchrun --nproc-per-node G -m densereg_cli.net train SHARDS ...)."""
    from densereg_net.train import train

    r = train(train_config(config_file, flags), resume=resume)
    click.echo(f"{'stopped' if r.stopped else 'finished'} at epoch {r.epoch} in {r.out}; "
               f"best {r.select_best} {r.best_metric:.4g}")


@cli.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("shards", type=click.Path(file_okay=False))
@click.option("--split", help="Split or alias to score. [val if the shards have it, else test, else train]")
@click.option("--out", type=click.Path(file_okay=False), help="Report directory (report.json, CED PNGs, sheet.png).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--fit", "dense_fit", is_flag=True,
              help="Also read the landmarks out by a dense fit of the face model (scored beside the nearest-U-V ones).")
@FLIP_OPTION
def eval_cmd(checkpoint, shards, split, out, batch_size, device, dense_fit, flip) -> None:
    """Score CHECKPOINT on a split of SHARDS: landmark NME/AUC/failures, dense error, part mIoU."""
    from densereg_net.evaluate import evaluate

    r = evaluate(checkpoint, shards, split, out, batch_size, device, fit=dense_fit, flip=flip)
    b = r["mean_shape_baseline"]["landmarks"]
    fitted = ""
    if dense_fit:
        f = r["dense_fit"]
        c = r["combined"]["landmarks"]
        fitted = (f" || dense fit: NME {f['landmarks']['nme']:.4f} AUC@0.08 {f['landmarks']['auc@0.08']:.4f} "
                  f"failure {f['landmarks']['failure_rate']:.3f} ({f['ms_per_face']:.1f} ms/face, {f['failed']} failed)"
                  f" || both averaged: NME {c['nme']:.4f} AUC@0.08 {c['auc@0.08']:.4f} failure {c['failure_rate']:.3f}")
    click.echo(f"{r['split']} ({r['samples']} images, head {r['head']}{', test-time flip' if flip else ''}; {r['split_reason']}): "
               f"NME {r['landmarks']['nme']:.4f} | AUC@0.08 {r['landmarks']['auc@0.08']:.4f} | "
               f"failure {r['landmarks']['failure_rate']:.3f} | dense {r['dense']['error']:.4f} "
               f"(AUC@0.1 {r['dense']['auc@0.1']:.4f}) | part mIoU {r['parts']['miou']:.4f} || "
               f"mean shape: NME {b['nme']:.4f} AUC@0.08 {b['auc@0.08']:.4f} failure {b['failure_rate']:.3f}{fitted}")


@cli.command("predict")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--landmarks", "landmarks_path", type=click.Path(dir_okay=False),
              help=".pts (1-based) or .ljson landmarks giving the crop.")
@click.option("--bbox", help="Face box X0,Y0,X1,Y1 (0-based pixels) giving the crop.")
@click.option("--detector", default="mtcnn", show_default=True,
              help="Without --landmarks and --bbox: the face detector (mtcnn, dlib-hog or haar); every face found is predicted.")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--fit", "dense_fit", is_flag=True,
              help="Also fit the face model to the dense output: pose, coefficients, 68 landmarks and the mesh "
                   "(STEM_fit.pts, STEM_fit.json, STEM_fit.obj), and the mean of both landmark read-outs "
                   "(STEM_combined.pts).")
@FLIP_OPTION
def predict_cmd(checkpoint, image, landmarks_path, bbox, detector, out, device, dense_fit, flip) -> None:
    """Predict IUV, an overlay and 68 landmarks (.pts) for the face in IMAGE (given by --landmarks or --bbox),
    or for every face a detector finds in it (files STEM_face0_*, STEM_face1_*, ...; exit 2 when none)."""
    from pathlib import Path

    from densereg_cli.net_predict import output_paths, predict_faces, write_outputs
    from densereg_data.io.images import read_image
    from densereg_net.predict import Predictor

    inputs = [checkpoint, image] + ([landmarks_path] if landmarks_path else [])
    if landmarks_path is None and bbox is None:
        predictor = Predictor(checkpoint, device, flip)
        files = predict_faces(predictor, read_image(image), image, out, inputs, detector, fit=dense_fit)
    else:
        stem = Path(image).stem
        output_paths(out, stem, inputs, dense_fit)  # every path checked before the network runs
        box = parse_bbox(bbox) if bbox else None
        predictor = Predictor(checkpoint, device, flip)
        pixels = read_image(image)
        files = write_outputs(predictor.predict(pixels, landmarks_path, box, fit=dense_fit), pixels, stem, out, inputs,
                              predictor, dense_fit)
    for f in files:
        click.echo(f)


@cli.command("bench")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--batch-size", type=int, help="[32 on CUDA, 8 on CPU]")
@click.option("--head", default="quantized", show_default=True, help="quantized, regression or classification.")
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
