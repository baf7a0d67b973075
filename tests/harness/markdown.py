"""Markdown as GitHub renders it, far enough to check links: headings, their anchors, and link targets.

GitHub's anchors (github-slugger): the heading's text lower-cased, every character that is not a
letter, digit, '_', '-' or space dropped, each space turned into '-'; a repeated anchor gets -1, -2, ...
Headings and links inside fenced code blocks and code spans are text, not Markdown.
"""

from __future__ import annotations

import re
from typing import Iterator, List, Tuple

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.S)  # never across a blank line
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+[\"'(].*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def prose_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
        elif opening:
            fence = opening.group(1)
        else:
            yield number, line


def prose(text: str) -> str:
    """The text with fenced code blocks blanked and code spans replaced, each line where it was."""
    lines = [""] * len(text.splitlines())
    for number, line in prose_lines(text):
        lines[number - 1] = line
    return CODE_SPAN.sub(lambda m: "code" + "\n" * m.group(0).count("\n"), "\n".join(lines))


def heading_text(markdown: str) -> str:
    """What GitHub shows of a heading: code spans' content, links' text, no emphasis marks."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(?<!\w)[*_]+|[*_]+(?!\w)", "", text)


def slug(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> List[str]:
    """Every anchor a page offers: one per heading, numbered as GitHub numbers repeats, and HTML ones."""
    seen: dict = {}
    found = []
    for _, line in prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading_text(heading.group(2)))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.append(base if count == 0 else f"{base}-{count}")
        found += HTML_ANCHOR.findall(line)
    return found


def link_targets(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code.

    A link's text may wrap onto the next line; its line number is where the link starts."""
    body = prose(text)
    targets = [(body.count("\n", 0, m.start()) + 1, m.group(1)) for m in INLINE_LINK.finditer(body)]
    for number, line in enumerate(body.splitlines(), 1):
        reference = REFERENCE.match(line)
        if reference:
            targets.append((number, reference.group(1)))
    return sorted(targets, key=lambda target: target[0])


def is_external(target: str) -> bool:
    return bool(SCHEME.match(target)) or target.startswith("//")
