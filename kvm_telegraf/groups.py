"""The optional collection groups of ``--collect GROUP``: each adds measurements the default run leaves out."""

from __future__ import annotations

from typing import FrozenSet, Iterable

# events: vm_events, one point per libvirt domain event between two batches.
GROUPS = ("events",)
ALL = "all"


def chosen_groups(names: Iterable[str]) -> FrozenSet[str]:
    """The groups asked for, ``all`` standing for every one."""
    chosen = frozenset(names)
    return frozenset(GROUPS) if ALL in chosen else chosen
