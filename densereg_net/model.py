"""A compact fully convolutional encoder-decoder with a registry of DenseReg heads.

Architecture (default width w = 32, about 3.6 M parameters with the quantized head):
    encoder   ResNet basic blocks at strides 2, 4, 8, 16 with w, 2w, 4w, 8w channels
    decoder   U-Net style: bilinear x2 upsampling + skip concatenation + two 3x3 convs, back to stride 2
    head      3x3 conv + 1x1 conv at stride 2 (half resolution), then the logits/values are
              bilinearly upsampled x2, so every output is at the FULL input resolution (B, C, S, S).
Input: (B, 3, S, S) float RGB in [0, 1], normalised inside the model (`INPUT_NORMS`); S a multiple of 16.

Input normalisation (`input_norm`, part of the model's config):
    imagenet        fixed per-channel mean and standard deviation (ImageNet's).
    per_image       each image's own per-channel mean and standard deviation: the model sees an
                    over-exposed, dim or colour-cast face as it sees a well-lit one (brightness,
                    contrast and a per-channel gain leave its output unchanged).

Heads (`HEADS`, by name):
    quantized       u, v: (K + 1)-way bin logits (class 0 = background) and K per-bin residuals;
                    parts: 9-way logits. Decoded u = (bin - 1 + residual[bin]) / K, bin = argmax
                    over classes 1..K.
    classification  u, v: (K + 1)-way bin logits only, decoded at bin centres (bin - 0.5) / K.
    regression      u, v: sigmoid of a direct regression.
Every head has the 9-way part head; the predicted foreground of every head is ``parts != 0``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from densereg_data.conventions import DEFAULT_K, N_PARTS, PART_FLIP, decode_bins
from densereg_data.errors import ConfigError

HEADS: dict[str, type] = {}
#: The widest model built (8 * MAX_WIDTH channels at stride 16: about 230 M parameters); a config or a
#: checkpoint asking for more is refused.
MAX_WIDTH = 256

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INPUT_NORMS = ("imagenet", "per_image")
#: What a new model uses (docs/NET.md "Training recipe" says why); checkpoints written before input_norm
#: existed were all "imagenet" (`complete_config`).
DEFAULT_INPUT_NORM = "per_image"
#: Floor of a per-image channel standard deviation (images in [0, 1]): a flat channel is centred, not blown up.
_MIN_STD = 1e-2


def register_head(name: str):
    def deco(cls):
        cls.name = name
        HEADS[name] = cls
        return cls
    return deco


def get_head(name: str) -> type:
    """The head class registered as `name`; ConfigError listing the valid names otherwise."""
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; valid heads: {', '.join(sorted(HEADS))}")
    return HEADS[name]


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))  # (B, cin + cskip, H, W) -> (B, cout, H, W)


class EncoderDecoder(nn.Module):
    """Features at stride 2: (B, 3, S, S) -> (B, w, S/2, S/2)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn_relu(3, w, 2), BasicBlock(w, w))
        self.down1 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.down2 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.down3 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        self.up2 = UpBlock(8 * w, 4 * w, 4 * w)
        self.up1 = UpBlock(4 * w, 2 * w, 2 * w)
        self.up0 = UpBlock(2 * w, w, w)

    def forward(self, x):
        s1 = self.stem(x)  # (B, w, S/2, S/2)
        s2 = self.down1(s1)  # (B, 2w, S/4, S/4)
        s3 = self.down2(s2)  # (B, 4w, S/8, S/8)
        s4 = self.down3(s3)  # (B, 8w, S/16, S/16)
        return self.up0(self.up1(self.up2(s4, s3), s2), s1)  # (B, w, S/2, S/2)


class Head(nn.Module):
    """Base: a 3x3 conv + 1x1 conv to `channels`, upsampled x2; subclasses split and decode."""

    name = "?"

    def __init__(self, width: int, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(conv_bn_relu(width, width), nn.Conv2d(width, self.channels(k), 1))

    @staticmethod
    def channels(k: int) -> int:
        raise NotImplementedError

    def forward(self, feat, size) -> dict[str, torch.Tensor]:
        y = F.interpolate(self.conv(feat), size=size, mode="bilinear", align_corners=False)  # (B, C, S, S)
        return self.split(y)

    def split(self, y) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode_uv(self, out: dict) -> torch.Tensor:
        """(B, 2, S, S) float32 predicted (u, v) at every pixel (meaningful where parts != 0)."""
        raise NotImplementedError


@register_head("quantized")
class QuantizedHead(Head):
    @staticmethod
    def channels(k):
        return 2 * (k + 1) + 2 * k + N_PARTS

    def split(self, y):
        k = self.k
        u_cls, v_cls, u_res, v_res, parts = torch.split(y, [k + 1, k + 1, k, k, N_PARTS], dim=1)
        return {"u_cls": u_cls, "v_cls": v_cls, "u_res": u_res, "v_res": v_res, "parts": parts}

    def decode_uv(self, out):
        uv = []
        for a in "uv":
            b = out[f"{a}_cls"][:, 1:].argmax(1, keepdim=True) + 1  # (B, 1, S, S) in 1..K
            r = out[f"{a}_res"].float().gather(1, b - 1).clamp(0, 1)
            uv.append(decode_bins(b, r, self.k))
        return torch.cat(uv, dim=1)  # (B, 2, S, S)


@register_head("classification")
class ClassificationHead(Head):
    @staticmethod
    def channels(k):
        return 2 * (k + 1) + N_PARTS

    def split(self, y):
        k = self.k
        u_cls, v_cls, parts = torch.split(y, [k + 1, k + 1, N_PARTS], dim=1)
        return {"u_cls": u_cls, "v_cls": v_cls, "parts": parts}

    def decode_uv(self, out):
        uv = [(out[f"{a}_cls"][:, 1:].argmax(1, keepdim=True).float() + 0.5) / self.k for a in "uv"]
        return torch.cat(uv, dim=1)  # (B, 2, S, S)


@register_head("regression")
class RegressionHead(Head):
    @staticmethod
    def channels(k):
        return 2 + N_PARTS

    def split(self, y):
        uv, parts = torch.split(y, [2, N_PARTS], dim=1)
        return {"uv": uv, "parts": parts}

    def decode_uv(self, out):
        return torch.sigmoid(out["uv"].float())


class DenseRegNet(nn.Module):
    """Encoder-decoder + one head. forward: (B, 3, S, S) in [0, 1] -> dict of (B, C, S, S) outputs."""

    def __init__(self, head: str = "quantized", k: int = DEFAULT_K, width: int = 32, input_norm: str = DEFAULT_INPUT_NORM):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
        self.config = {"head": head, "k": int(k), "width": int(width), "input_norm": input_norm}
        self.body = EncoderDecoder(width)
        self.head = get_head(head)(width, k)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.config["input_norm"] == "per_image":
            x = image.float()
            x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True).clamp_min(_MIN_STD)
            x = x.to(image.dtype)
        else:
            x = (image - self.mean) / self.std
        return self.head(self.body(x), image.shape[-2:])

    @torch.no_grad()
    def predict(self, image: torch.Tensor, flip: bool = False) -> dict[str, torch.Tensor]:
        """Decoded prediction: {"uv": (B, 2, S, S) float32, "parts": (B, S, S) int64, "fg": (B, S, S) bool}.

        flip (test-time flip): the mirrored image is predicted too and mapped back (left and right parts
        swapped, u -> 1 - u); the part probabilities and the decoded U-V of the two are averaged. The
        mirrored image runs first, so the raw outputs a forward hook keeps last (`dense_fit.head_outputs`,
        the bin confidence) are the image's own.
        """
        mirrored = self(image.flip(-1)) if flip else None
        out = self(image)
        scores, uv = out["parts"].float(), self.head.decode_uv(out)
        if mirrored is not None:
            swap = torch.tensor(PART_FLIP, device=image.device)
            scores = (scores.softmax(1) + mirrored["parts"].float().softmax(1)[:, swap].flip(-1)) / 2
            back = self.head.decode_uv(mirrored).flip(-1)
            uv = (uv + torch.stack([1 - back[:, 0], back[:, 1]], 1)) / 2
        parts = scores.argmax(1)
        fg = parts > 0
        return {"uv": uv * fg.unsqueeze(1), "parts": parts, "fg": fg}


def build_model(head: str = "quantized", k: int = DEFAULT_K, width: int = 32,
                input_norm: str = DEFAULT_INPUT_NORM) -> DenseRegNet:
    return DenseRegNet(head, k, width, input_norm)


def complete_config(model_config: dict) -> dict:
    """A checkpoint's model_config with every key: one written before `input_norm` existed is "imagenet"."""
    return {"input_norm": "imagenet", **model_config}


def model_from_config(model_config: dict) -> DenseRegNet:
    """The model a checkpoint's model_config describes."""
    mc = complete_config(model_config)
    return build_model(mc["head"], mc["k"], mc["width"], mc["input_norm"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
