"""Start-up configuration: durations, and the TOML file behind ``--config``.

Everything is checked before the first cycle, so a bad setting is one clear
line and exit 2, never a traceback in Telegraf's log.
"""

from __future__ import annotations

import codecs
import math
import os
import re
import stat
from typing import Any, Dict, Mapping, Optional

import click

from kvm_telegraf.domain_xml import MetadataTag, parse_metadata_tag
from kvm_telegraf.log import clip

# As Go's time.ParseDuration: ASCII digits ([0-9], where \d takes any script's digits), no spaces; µs or μs.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# A bare number of seconds, as float() reads it, but only ASCII and no spaces or underscores ("1_0", " 5", "٣").
_BARE_NUMBER = re.compile(r"[0-9A-Za-z.+-]+\Z")


def _bare_seconds(text: str) -> Optional[float]:
    if not _BARE_NUMBER.match(text):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_duration(text: Any) -> float:
    """Seconds from a Telegraf-style duration ("10s", "1m30s", "500ms") or a bare number of seconds.

    >>> parse_duration("1m30s")
    90.0
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {clip(repr(text))}")
    if isinstance(text, (int, float)):
        seconds: Optional[float] = float(text)
    else:
        raw = str(text)
        seconds = _bare_seconds(raw)
        if seconds is None:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or not raw:
                raise ValueError(
                    f"not a duration: {clip(repr(text))} (use e.g. 10s, 500ms, 5m: ASCII digits and no spaces)"
                ) from None
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {clip(repr(text))} (it must be finite)")
    if not seconds > 0:
        raise ValueError(f"duration must be positive: {clip(repr(text))}")
    return seconds


def format_seconds(seconds: float) -> str:
    """A bound as a person writes it: ``10ms``, ``1s``, ``5m``, ``24h``."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Duration(click.ParamType):
    """A finite, positive duration within [low, high]: outside it libvirt's and Python's timers misbehave."""

    name = "duration"

    def __init__(self, low: float = 1e-3, high: float = 86400.0) -> None:
        self.low, self.high = low, high

    @property
    def bounds(self) -> str:
        return f"{format_seconds(self.low)} to {format_seconds(self.high)}"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not self.low <= seconds <= self.high:
            self.fail(f"{clip(repr(value))} is out of range: {self.bounds}", param, ctx)
        return seconds


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


# What each key of a --config file may hold: the expectation is also the refusal's wording.
STRING = "a string"
FLAG = "true or false"
DURATION = 'a duration (a string such as "10s", or a number of seconds)'
STRINGS = "a string or a list of strings"
SOME_STRINGS = "a string or a non-empty list of strings"
STRING_TABLE = "a string, a list of strings, or a table of strings"


def _as_option_value(value: Any, expected: str) -> Any:
    """The value as click takes it (a list for a repeatable option); ValueError when it is not *expected*."""
    if expected == FLAG:
        ok = isinstance(value, bool)
    elif expected == DURATION:
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    elif expected == STRING:
        ok = isinstance(value, str)
    else:
        if isinstance(value, str):
            value = [value]
        elif expected == STRING_TABLE and isinstance(value, dict):
            if not all(isinstance(entry, str) for entry in value.values()):
                raise ValueError
            value = [f"{name}={entry}" for name, entry in value.items()]
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        ok = ok and (bool(value) or expected != SOME_STRINGS)
    if not ok:
        raise ValueError
    return value


# A --config file is a few lines; anything bigger than this is a mistake (or /dev/zero), refused before parsing.
CONFIG_MAX_BYTES = 1 << 20
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


# Byte-order marks, longest first (UTF-32's begins with UTF-16's): TOML is UTF-8 text without one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "a UTF-32 byte-order mark"),
    (codecs.BOM_UTF32_BE, "a UTF-32 byte-order mark"),
    (codecs.BOM_UTF8, "a UTF-8 byte-order mark (EF BB BF)"),
    (codecs.BOM_UTF16_LE, "a UTF-16 byte-order mark"),
    (codecs.BOM_UTF16_BE, "a UTF-16 byte-order mark"),
)


def _refuse_a_byte_order_mark(shown: str, data: bytes) -> None:
    for mark, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise click.BadParameter(
                f"{shown} starts with {name}, which TOML does not allow: save it as UTF-8 without one",
                param_hint="--config",
            )


def _refuse_unless_small_regular_file(shown: str, status: os.stat_result) -> None:
    for is_kind, kind in _FILE_KINDS:
        if is_kind(status.st_mode):
            raise click.BadParameter(f"{shown} is {kind}, not a regular file", param_hint="--config")
    if not stat.S_ISREG(status.st_mode):
        raise click.BadParameter(f"{shown} is not a regular file", param_hint="--config")
    if status.st_size > CONFIG_MAX_BYTES:
        raise click.BadParameter(
            f"{shown} is {status.st_size} bytes, more than 1 MiB, the most a config file may hold",
            param_hint="--config",
        )


def _read_config_bytes(path: str, shown: str) -> bytes:
    """At most CONFIG_MAX_BYTES of a regular file: a device, a FIFO or a huge file is refused before it is read.

    The open does not block (a FIFO put in its place after the check), and the read stops one byte past the
    bound, so a file that grows, or a /proc file that reports no size, cannot make it read on.
    """
    try:
        _refuse_unless_small_regular_file(shown, os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as handle:
            _refuse_unless_small_regular_file(shown, os.fstat(handle.fileno()))
            data = handle.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {shown}: {exc.strerror}", param_hint="--config") from None
    if len(data) > CONFIG_MAX_BYTES:
        raise click.BadParameter(
            f"{shown} holds more than 1 MiB, the most a config file may hold",
            param_hint="--config",
        )
    return data


def load_config_file(path: str, schema: Mapping[str, str]) -> Dict[str, Any]:
    """The TOML file as click defaults; click.BadParameter naming the file and the key for anything wrong.

    *schema* maps each key to what it may hold. A repeatable key takes a list, a
    single string, or (metadata_tag) a table, which stands for one
    ``KEY=VALUE`` entry per pair (``[metadata_tag]`` then ``nova_name = "..."``).
    """
    # Imported here, not at the top: most runs have no --config, and every import costs start-up and RSS.
    from kvm_telegraf import toml_reader as tomllib  # tomllib's loads and error where tomllib is missing too

    shown = clip(path)
    raw = _read_config_bytes(path, shown)
    _refuse_a_byte_order_mark(shown, raw)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"{shown} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
            param_hint="--config",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{shown} is not valid TOML: {exc}", param_hint="--config") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise click.BadParameter(
            f"{shown} is not valid TOML: its arrays or inline tables nest too deeply", param_hint="--config"
        ) from None
    normalised = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(normalised) - set(schema))
    if unknown:
        raise click.BadParameter(
            f"unknown key(s) {clip(', '.join(unknown))} in {shown}; known keys: {', '.join(sorted(schema))}",
            param_hint="--config",
        )
    options = {}
    for key, value in normalised.items():
        try:
            options[key] = _as_option_value(value, schema[key])
        except ValueError:
            raise click.BadParameter(
                f"{clip(key)} in {shown} must be {schema[key]}, not {_toml_kind(value)}", param_hint="--config"
            ) from None
    return options


def _toml_kind(value: Any) -> str:
    """How TOML would name the value that was refused."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an empty list" if not value else "a list holding " + ", ".join(sorted({_toml_kind(v) for v in value}))
    names = {int: "an integer", float: "a float", str: "a string"}
    return names.get(type(value), "a date or time")
