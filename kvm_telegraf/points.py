"""The plain data that shape produces and encode consumes, and the range line protocol can carry."""

from __future__ import annotations

from typing import Iterator, Mapping, NamedTuple, Optional, Tuple, Union

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


class Layout:
    """The field keys and value types that lines share: shape's plans make one per line of a shape of domain.

    Hashed and compared by identity, so the encoder finds its template for a planned line without hashing
    the keys again.
    """

    __slots__ = ("keys", "types")

    def __init__(self, keys: Tuple[str, ...], types: Tuple[type, ...]) -> None:
        self.keys = keys
        self.types = types


class Fields(Mapping[str, FieldValue]):
    """A line's fields as a shared Layout and the values in its order, each of exactly the layout's type and
    every int within int64 (the maker checks; the encoder trusts it).

    A read-only Mapping like any point's fields; made without a dict per line.
    """

    __slots__ = ("layout", "row")

    def __init__(self, layout: Layout, row: Tuple[FieldValue, ...]) -> None:
        self.layout = layout
        self.row = row  # the values in the layout's order (not ``values``: that is the Mapping's method)

    def __getitem__(self, key: str) -> FieldValue:
        """A field by name: a scan of the keys, no index kept per layout (the hot paths read ``row``)."""
        try:
            return self.row[self.layout.keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.keys)

    def __len__(self) -> int:
        return len(self.row)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class KeptFields(Fields):
    """Fields that their maker hands out as the same object batch after batch while what they say is unchanged
    (a domain's vm_features, kept while its config stays): the encoder keeps their text while each batch prints them."""

    __slots__ = ()
