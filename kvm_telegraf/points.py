"""The plain data that shape produces and encode consumes, and the range line protocol can carry."""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Tuple, Union

FieldValue = Union[bool, int, float, str]
Tags = Tuple[Tuple[str, str], ...]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Point(NamedTuple):
    """One measurement record; tags sorted by key, fields in the order they are printed."""

    measurement: str
    tags: Tags
    fields: Mapping[str, FieldValue]
    # None: the batch's timestamp. Only a vm_events point has its own: when libvirt pushed the event.
    timestamp_ns: Optional[int] = None
