"""The one config layering rule, for builds and training runs alike.

    resolved = dataclass defaults  <-  optional config file (JSON or TOML)  <-  flags the user gave

`layered_config(cls, path, flags, section)` reads the file (a table/object of the dataclass's fields,
dashes or underscores, optionally inside a ``[section]`` / ``{"section": {...}}``), checks every
value's type against the field's annotation, lets the explicitly given flags win, and builds the
frozen config (whose ``__post_init__`` checks ranges). Every problem is one `ConfigError` line naming
the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

from densereg_data.errors import ConfigError

__all__ = ["layered_config", "read_config_file", "check_value", "MAX_CONFIG_BYTES"]

#: A config file larger than this is refused unread.
MAX_CONFIG_BYTES = 1 << 20


def read_config_file(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """The settings in a JSON or TOML file ({} without a path), keys with dashes turned to underscores."""
    if not path:
        return {}
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"config file not found (or not a regular file): {p}")
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {p} is larger than {MAX_CONFIG_BYTES} bytes")
        text = p.read_bytes().decode("utf-8")
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:120]
        raise ConfigError(f"cannot read config file {p}: {why}") from None
    if section and isinstance(data, dict) and isinstance(data.get(section), dict):
        data = data[section]
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table/object of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _accepts(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_accepts(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (dict, list, tuple):
        return isinstance(value, origin)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_value(cls, name: str, value, where: str) -> None:
    """Raise ConfigError unless `value` fits the annotation of field `name` of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    if not _accepts(hints[name], value):
        want = getattr(hints[name], "__name__", str(hints[name]).replace("typing.", ""))
        if isinstance(value, float) and not math.isfinite(value):
            want = f"a finite number ({want})"
        raise ConfigError(f"{where}: {name} must be {want}, got {type(value).__name__} {str(value)[:40]!r}")


def layered_config(cls, path: str | Path | None, flags: dict[str, Any], section: str | None = None):
    """An instance of the dataclass `cls` from its defaults <- the file at `path` <- `flags`.

    flags: only the settings the user gave explicitly (not click's defaults).
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    merged = read_config_file(path, section)
    unknown = sorted(set(merged) - fields)
    if unknown:
        raise ConfigError(f"unknown settings in {path}: {', '.join(unknown)} (valid: {', '.join(sorted(fields))})")
    for name, value in merged.items():
        check_value(cls, name, value, str(path))
    for name, value in flags.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r} (valid: {', '.join(sorted(fields))})")
        check_value(cls, name, value, f"--{name.replace('_', '-')}")
    merged.update(flags)
    try:
        return cls(**merged)
    except TypeError as exc:
        raise ConfigError(f"bad settings: {exc}") from None
