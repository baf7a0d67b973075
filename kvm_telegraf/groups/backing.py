"""``--collect backing``: vm_block_chain, each disk image with its backing files: path, sizes, write threshold.

It ORs the BACKING flag into the one bulk call, which then lists every image of
each disk's chain as a block entry of its own, under its disk's name.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, with_tags
from kvm_telegraf.group import DomainView, Group, Stats
from kvm_telegraf.libvirt_facts import STATS_BACKING
from kvm_telegraf.measurements import disk_fields
from kvm_telegraf.points import FieldValue, Point


def vm_block_chain(view: DomainView) -> List[Point]:
    """One point per disk image, the backing chain included: its path, sizes and write threshold.

    Tagged with the disk's target and the image's ``depth`` in its chain, 0 for the image the guest writes
    to: that stays the same while the domain is re-plugged, stopped and started, where libvirt's own index
    (``vdb[3]`` in virsh, ``index`` in the XML) is renumbered on every re-plug and absent while the domain is
    shut off; it is the ``index`` field, where libvirt reports one. libvirt reports I/O counters for the top
    image only; the fields have vm_devices' names.

    ``vm_block_chain,depth=1,device=vdb,uuid=1b4e…,vm=web01 index=3i,path="/images/base.raw",…``
    """
    stats = view.domain.stats
    depths: Dict[str, int] = {}
    points = []
    for i in range(counter(stats.get("block.count")) or 0):
        prefix = f"block.{i}."
        device = stats.get(prefix + "name") or f"disk{i}"
        depth = depths.get(device, 0)
        depths[device] = depth + 1
        fields: Dict[str, FieldValue] = {}
        index = counter(stats.get(prefix + "backingIndex"))
        if index is not None:
            fields["index"] = index
        path = stats.get(prefix + "path")
        if isinstance(path, str) and path:
            fields["path"] = path
        fields.update(disk_fields(stats, prefix))
        threshold = counter(stats.get(prefix + "threshold"))
        if threshold:
            fields["threshold_bytes"] = threshold
        tags = with_tags(view.tags, ("device", str(device)), ("depth", str(depth)))
        points.append(Point("vm_block_chain", tags, fields))
    return points


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    """With BACKING a backing image is a block entry of its own, under its disk's name."""
    names = {value for key, value in stats.items() if key.startswith("block.") and key.endswith(".name")}
    return len(names) < (stats.get("block.count") or 0)


GROUP = Group(
    name="backing",
    help="vm_block_chain: each disk image, backing files included: path, sizes, write threshold",
    since=1_002_012,
    flags=STATS_BACKING,
    measurements=("vm_block_chain",),
    points=vm_block_chain,
    enabled=enabled,
    enable_hint="a disk on an image with a backing file (a qcow2 overlay, an external snapshot)",
)
