"""Start-up configuration: durations, and the TOML file behind ``--config``.

Everything is checked before the first cycle, so a bad setting is one clear
line and exit 2, never a traceback in Telegraf's log.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, Iterable, Optional

import click

from kvm_telegraf.domain_xml import MetadataTag, parse_metadata_tag

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: Any) -> float:
    """Seconds from a Telegraf-style duration ("10s", "1m30s", "500ms") or a bare number of seconds.

    >>> parse_duration("1m30s")
    90.0
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = str(text).strip()
        try:
            seconds = float(raw)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or not raw:
                raise ValueError(f"not a duration: {text!r} (use e.g. 10s, 500ms, 5m)") from None
    if not seconds > 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class MetadataTagSpec(click.ParamType):
    """``TAG=XPATH`` for ``--metadata-tag``, checked before the first cycle."""

    name = "TAG=XPATH"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> MetadataTag:
        if isinstance(value, MetadataTag):
            return value
        try:
            return parse_metadata_tag(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def load_config_file(path: str, known_keys: Iterable[str], repeatable: Iterable[str] = ()) -> Dict[str, Any]:
    """The TOML file as click defaults; click.BadParameter for an unreadable file or an unknown key.

    A repeatable key takes a list, a single string, or a table, which stands for
    one ``KEY=VALUE`` entry per pair (``[metadata_tag]`` then ``nova_name = "..."``).
    """
    # Imported here, not at the top: most runs have no --config, and every import costs start-up and RSS.
    if sys.version_info >= (3, 11):
        import tomllib  # novermin - guarded by the version check above
    else:  # pragma: no cover - exercised on the distros' 3.9 and 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", param_hint="--config") from None
    known = set(known_keys)
    normalised = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(normalised) - known)
    if unknown:
        raise click.BadParameter(
            f"unknown key(s) {', '.join(unknown)} in {path}; known keys: {', '.join(sorted(known))}",
            param_hint="--config",
        )
    for key in set(repeatable) & set(normalised):
        value = normalised[key]
        if isinstance(value, str):
            normalised[key] = [value]
        elif isinstance(value, dict):
            normalised[key] = [f"{name}={entry}" for name, entry in value.items()]
    return normalised
