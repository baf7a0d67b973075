"""The plain data that shape produces and encode consumes, and the range line protocol can carry."""

from __future__ import annotations

from typing import Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

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


class LinesLayout:
    """What a run of lines that share one row of values prints: each line's measurement, its Layout, and where its
    values sit in the row. Shape's plans make one per shape of domain (and its variants), shared by every domain of
    that shape; hashed and compared by identity, so the encoder keeps one template for all of them.
    """

    __slots__ = ("measurements", "layouts", "picks", "width")

    def __init__(
        self,
        measurements: Tuple[str, ...],
        layouts: Tuple[Optional[Layout], ...],
        picks: Tuple[Tuple[int, ...], ...],
        width: int,
    ) -> None:
        self.measurements = measurements  # each line's
        self.layouts = layouts  # each line's; None: its fields are the Mapping at its one position
        self.picks = picks  # each line's values' positions in the row, in its layout's order
        self.width = width  # the row's length


class Lines(NamedTuple):
    """Consecutive lines of one batch that share one row of values (a planned domain's default four measurements):
    printed by one template, where a Point per line would cost an object and a lookup each.

    Its values keep Fields' promise (each of exactly its layout's type, every int within int64); a line whose
    layout is None has its fields whole at its one position (a domain's vm_features).
    """

    layout: LinesLayout
    tags: Tuple[Tags, ...]  # each line's tags: the same tuple from batch to batch while they are unchanged
    row: Sequence[object]  # the values; positions no line picks are the maker's, unprinted

    def points(self) -> List[Point]:
        """The same lines as Points (the encoder's path for a row a template cannot print, and the tests')."""
        points = []
        row = self.row
        for measurement, tags, layout, picks in zip(
            self.layout.measurements, self.tags, self.layout.layouts, self.layout.picks
        ):
            fields = row[picks[0]] if layout is None else Fields(layout, tuple([row[at] for at in picks]))
            points.append(Point(measurement, tags, fields))  # type: ignore[arg-type]
        return points


Batch = List[Union[Point, Lines]]  # what shape hands encode: points in batch order, a planned domain's as one Lines


def each_point(batch: Batch) -> List[Point]:
    """The batch with every Lines as its points: for a reader of single points (tests, benchmarks)."""
    points: List[Point] = []
    for item in batch:
        if type(item) is Lines:
            points += item.points()
        else:
            points.append(item)  # type: ignore[arg-type]
    return points
