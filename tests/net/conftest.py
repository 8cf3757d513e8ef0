"""Fixtures of the densereg_net tests; the synthetic shard writer lives in `net_fakes` (a unique
module name, so tests/data's conftest never shadows it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from net_fakes import write_shards


@pytest.fixture
def shards(tmp_path) -> Path:
    return write_shards(tmp_path / "shards")


@pytest.fixture(autouse=True)
def _threads():
    import torch
    torch.set_num_threads(1)
    yield
