"""Hostile input files, written by the tests that need them (never committed as data)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, extra: list[tuple[bytes, bytes]] = (), rows: bytes | None = None) -> bytes:
    """A valid 8-bit grayscale PNG of the given size (black), with extra chunks before IDAT."""
    raw = rows if rows is not None else b"".join(b"\x00" + bytes(width) for _ in range(height))
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    for kind, data in extra:
        out += _chunk(kind, data)
    return out + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def huge_png(path: Path, side: int = 12000) -> Path:
    """A small file (about 140 kB) that decodes to side x side pixels."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(side)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path.write_bytes(out + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def bomb_chunk_png(path: Path, kind: bytes) -> Path:
    """A 16x16 PNG whose zTXt / iTXt / iCCP chunk inflates to 64 MB."""
    bomb = zlib.compress(bytes(64 << 20), 9)
    if kind == b"zTXt":
        data = b"Comment\x00\x00" + bomb
    elif kind == b"iTXt":
        data = b"Comment\x00\x01\x00\x00\x00" + bomb
    else:  # iCCP
        data = b"icc\x00\x00" + bomb
    path.write_bytes(png_bytes(16, 16, [(kind, data)]))
    return path


def ppm(path: Path, maxval: int) -> Path:
    path.write_bytes(f"P6\n4 4\n{maxval}\n".encode() + bytes(4 * 4 * 3 * (2 if maxval > 255 else 1)))
    return path


def deep_ljson(path: Path, depth: int = 100_000) -> Path:
    path.write_text('{"version": 2, "landmarks": {"points": ' + "[" * depth + "]" * depth + "}}")
    return path


def bigint_ljson(path: Path, digits: int = 5000) -> Path:
    path.write_text('{"version": 2, "landmarks": {"points": [[' + "9" * digits + ", 1]]}}")
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def dev_zero_link(path: Path) -> Path:
    path.symlink_to("/dev/zero")
    return path


def face_image(path: Path, rng: np.random.Generator, size=(120, 100)) -> Path:
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path
