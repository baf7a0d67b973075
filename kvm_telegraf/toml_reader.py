"""TOML text as a dict, read by whichever reader this Python has, refused as tomllib refuses it.

Python >= 3.11 has tomllib; 3.9 and 3.10 read with tomli, the same parser, where it is installed, else with
toml, the older reader that Debian 11 ships as python3-toml (it has no python3-tomli). toml words its errors
its own way, crashes on some broken files (IndexError, AttributeError, TypeError, OverflowError) and reads a
list left open at the end of the file as if it were closed, ``domain = ["a", "b"`` as ``["a", ""]``. Here
each of these is one TOMLDecodeError, "reason (at line L, column C)" as tomllib words it. A RecursionError
(arrays or tables nested too deeply), which both raise, is the caller's to word.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Dict


class TOMLDecodeError(ValueError):
    """The text is not valid TOML: the reader's reason and where it stopped."""


def loads(text: str) -> Dict[str, Any]:
    """The document, read by tomllib (tomli before Python 3.11) where this Python has it, else by toml."""
    if sys.version_info >= (3, 11) or importlib.util.find_spec("tomli") is not None:
        return loads_with_tomllib(text)
    return loads_with_toml(text)


def loads_with_tomllib(text: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib  # novermin - guarded by the version check above
    else:
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TOMLDecodeError(str(exc)) from exc


def loads_with_toml(text: str) -> Dict[str, Any]:
    import toml

    try:
        document = toml.loads(text)
    except RecursionError:
        raise
    except toml.TomlDecodeError as exc:
        raise TOMLDecodeError(f"{exc.msg.strip()} (at line {exc.lineno}, column {exc.colno})") from exc
    except Exception as exc:  # toml 0.10's own bugs on broken files: still "not valid TOML", never a traceback
        raise TOMLDecodeError(f"the toml module fails on it ({type(exc).__name__}: {exc})") from exc
    if _ends_inside_brackets(text):
        raise TOMLDecodeError("Unclosed array (at end of document)")
    return document


def _ends_inside_brackets(text: str) -> bool:
    """Whether more ``[`` and ``{`` than ``]`` and ``}`` stand outside strings and comments: a file that ends
    inside a list or an inline table (toml read those as closed)."""
    depth, at, end = 0, 0, len(text)
    while at < end:
        char = text[at]
        if char == "#":
            newline = text.find("\n", at)
            at = end if newline < 0 else newline
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, at) else char
            at += len(quote)
            while at < end and not text.startswith(quote, at):
                at += 2 if char == '"' and text[at] == "\\" else 1
            at += len(quote)
            while len(quote) == 3 and at < end and text[at] == char:  # """a"""" ends in a quote of its own
                at += 1
            continue
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        at += 1
    return depth > 0
