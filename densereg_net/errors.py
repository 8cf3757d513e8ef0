"""Errors of densereg_net (kept free of densereg_data so the network runs without the label stack)."""

from __future__ import annotations


class NetError(Exception):
    """Base class of every error densereg_net raises on purpose."""


class NetInputError(NetError, ValueError):
    """Bad input: a shard directory, checkpoint or image that cannot be used (the message says why)."""
