"""Credentials out of every line: user information and secret query values of libvirt URIs, in any text.

libvirt parses a URI with libxml2's RFC 3986 parser, so a password that holds a ``/``, an ``@``, a ``#`` or a
``?`` shifts where the authority ends (``qemu+ssh://user:pw/x@host/system`` is refused as unparsable, and
libvirt's error quotes it whole), and ``qemu+ssh:user:pw@host/system`` (no ``//``) is an opaque URI that
libvirt opens all the same. libvirt and ssh also quote parts on their own (ssh's "Identity file /path not
accessible" for ``?keyfile=``). So two passes: every URI-shaped word in a text loses what lies between its
``scheme:`` or ``scheme://`` and its last ``@``, and the value of every query parameter whose name looks
secret; and when the URI is known (ours), each piece of its user information and of those values, raw and
percent-decoded, is hidden wherever the text quotes it.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional, Sequence

HIDDEN = "***"
# Pieces shorter than this are hidden only inside a URI: replacing "pw" in free text would maul it.
MIN_SECRET_CHARS = 4

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*:(?://)?"
# A URI-shaped word up to its last "@" before any query: the user information (password included) goes.
_USERINFO_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9+.-])({_SCHEME})[^\s'\"<>?]*@")
_SECRET_NAME = r"[^=&;#\s'\"]*(?:pass|pwd|secret|token|key|auth|cred)[^=&;#\s'\"]*"
_SECRET_QUERY_VALUE = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&;#\s'\"]*")
_URI_START = re.compile(_SCHEME)
_PORT = re.compile(r"[0-9]*\Z")


def uri_secrets(uri: str) -> Iterator[str]:
    """The pieces of *uri* no line may show: its user information (and the password in it), and the values of
    query parameters named like secrets (password, keyfile, token, ...), raw and percent-decoded."""
    start = _URI_START.match(uri)
    if start is None:
        return
    rest = uri[start.end() :]
    before_query = rest.split("?", 1)[0]
    if "@" in before_query:
        userinfo = before_query.rsplit("@", 1)[0]
        pieces = [userinfo, userinfo.split(":", 1)[1] if ":" in userinfo else ""]
    else:  # "user:pw?x@host": libxml2 ends the authority at the "?", and a port that is no number is a password
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        port = authority.rsplit("]", 1)[-1].partition(":")[2]
        pieces = [authority] if port and not _PORT.match(port) else []
    query = rest.split("?", 1)[1] if "?" in rest else ""
    for parameter in re.split(r"[&;]", query):
        name, _, value = parameter.partition("=")
        if re.fullmatch(rf"(?i){_SECRET_NAME}", name):
            pieces.append(value.split("#", 1)[0])
    if not pieces:
        return
    # Only a URI that carries a secret needs urllib.parse (and the ipaddress it imports): a run on qemu:///system
    # peaks 0.42 MiB lower without them (benchmarks/memory.py; tests/test_redact.py pins it).
    from urllib.parse import unquote

    for piece in pieces:
        for form in (piece, unquote(piece)):
            if form:
                yield form


def redact(text: str, uri: Optional[str] = None, min_chars: int = MIN_SECRET_CHARS) -> str:
    """*text* with the credentials of every URI in it hidden, and with *uri*'s own wherever it quotes them
    (those of at least *min_chars*: 1 when *text* is the URI itself)."""
    secrets = sorted(set(uri_secrets(uri)) if uri else (), key=len, reverse=True)
    for secret in secrets:
        if len(secret) >= min_chars:
            text = text.replace(secret, HIDDEN)
    text = _USERINFO_IN_TEXT.sub(rf"\1{HIDDEN}@", text)
    return _SECRET_QUERY_VALUE.sub(rf"\1{HIDDEN}", text)


def redact_argv(argv: Sequence[str]) -> Iterator[str]:
    """A command line as a line may show it: each argument (``--uri=...`` too) with its credentials hidden."""
    for arg in argv:
        option, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        yield option + equals + redact(value, value, min_chars=1)
