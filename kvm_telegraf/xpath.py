"""ElementTree's XPath subset with a bound on the work one path may do on one document.

``Element.find`` chains one generator per step and never drops a duplicate, so each ``//`` step multiplies the
elements in flight by the depth of the tree: ``metadata//a//a//a//a//b`` on a 100-level-deep ``<metadata>``
took 1.4 s of CPU, at 250 levels and a few more ``//`` it would run for hours. Here the same steps (ElementTree's
own tokenizer and step functions, so the subset and its answers stay the same) run with each element passed on
once per step, and every element a step yields counts against a budget; past it, XPathTooCostlyError. Without
duplicates one ``//`` step visits at most (elements x depth) elements inside ElementTree's C iterators, which no
budget can count: a path with ``//`` does not run on a document where that product passes MAX_VISITS.
"""

from __future__ import annotations

import xml.etree.ElementPath as ElementPath
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional

# The most elements one "//" step may visit on a document (its elements x its depth): a libvirt domain XML of 300
# elements and 8 levels is 2,400; a 250-level <metadata> chain in it about 140,000.
MAX_VISITS = 1_000_000
# Elements the steps of one path may yield on one document, duplicates included: a "//" from <domain> through
# a libvirt domain XML of 300 elements yields 300.
MAX_STEPS = 100_000

Step = Callable[["_Context", Iterable[ElementTree.Element]], Iterator[ElementTree.Element]]


class XPathTooCostlyError(Exception):
    """The path needs more work on this document than the bound allows."""


class _Context:
    """What ElementTree's step functions expect of their context: the root, and a parent map made on demand."""

    def __init__(self, root: ElementTree.Element) -> None:
        self.root = root
        self.parent_map: Optional[Dict[ElementTree.Element, ElementTree.Element]] = None


def compile_path(path: str, namespaces: Optional[Mapping[str, str]] = None) -> List[Step]:
    """The steps of *path*, as ElementTree's iterfind() compiles them; SyntaxError (or another error of its
    parser) for a path it cannot evaluate."""
    if path[-1:] == "/":
        path += "*"
    tokens = iter(ElementPath.xpath_tokenizer(path, namespaces))
    steps: List[Step] = []
    token = next(tokens, None)
    while token is not None:
        try:
            steps.append(ElementPath.ops[token[0]](tokens.__next__, token))
        except StopIteration:
            raise SyntaxError("invalid path") from None
        token = next(tokens, None)
        if token is not None and token[0] == "/":
            token = next(tokens, None)
    return steps


def descends(path: str) -> bool:
    """Whether *path* has a step whose work grows with the depth of the document."""
    return "//" in path


def visits(root: ElementTree.Element) -> int:
    """The most elements one ``//`` step can visit in the document below *root*: its elements x its depth."""
    elements, deepest, stack = 0, 0, [(root, 1)]
    while stack:
        element, level = stack.pop()
        elements += 1
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in element)
    return elements * deepest


def first_match(
    root: ElementTree.Element, steps: List[Step], max_steps: int = MAX_STEPS
) -> Optional[ElementTree.Element]:
    """The element ``root.find(path)`` returns, with each element passed on once per step; XPathTooCostlyError
    once the steps have yielded more than *max_steps* elements."""
    spent = [0]

    def once(elements: Iterator[ElementTree.Element]) -> Iterator[ElementTree.Element]:
        seen = set()
        for element in elements:
            spent[0] += 1
            if spent[0] > max_steps:
                raise XPathTooCostlyError
            if element not in seen:
                seen.add(element)
                yield element

    context = _Context(root)
    result: Iterator[ElementTree.Element] = iter((root,))
    for step in steps:
        result = once(step(context, result))
    return next(result, None)
