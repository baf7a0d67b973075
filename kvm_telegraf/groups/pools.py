"""``--collect pools``: vm_storage_pools, capacity and use per storage pool, read again every --features-refresh."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from kvm_telegraf.fields import counter, host_tags, with_tags
from kvm_telegraf.group import Group, HostMemo, or_none
from kvm_telegraf.libvirt_facts import POOL_STATES
from kvm_telegraf.points import FieldValue, Point
from kvm_telegraf.snapshot import DomainSample

POOL_SIZES = (
    ("capacity_bytes", "capacity"),
    ("allocation_bytes", "allocation"),
    ("available_bytes", "available"),
)
# The states in which libvirt knows a pool's sizes: an inactive (or building, inaccessible) one answers 0 for each.
SIZED_STATES = frozenset({2, 3})  # running, degraded


def pool_facts(conn: Any) -> List[Dict[str, Any]]:
    """Every storage pool: name, state, sizes in bytes, and the volume count of an active one."""
    pools = []
    for pool in conn.listAllStoragePools(0):
        info = or_none(pool.info)
        if info is None:
            continue
        state, capacity, allocation, available = info
        entry = {"name": pool.name(), "state": state, "capacity": capacity, "allocation": allocation}
        entry["available"] = available
        if pool.isActive():
            volumes = or_none(pool.numOfVolumes)
            if volumes is not None:
                entry["volumes"] = volumes
        pools.append(entry)
    return sorted(pools, key=lambda entry: entry["name"])


def call(conn: Any, memo: HostMemo) -> Dict[str, Any]:
    """``{"pools": [...]}``: the last good listing, read again once the refresh period has passed."""
    pools = memo.every("pools", lambda: or_none(lambda: pool_facts(conn)))
    return {"pools": pools} if pools is not None else {}


def vm_storage_pools(
    host: Mapping[str, Any], _domains: Sequence[DomainSample], _cycle_ns: Optional[int]
) -> List[Point]:
    """One point per storage pool: state, capacity, allocation, available space and volume count.

    The sizes only while the pool runs: libvirt answers 0 for an inactive pool, which is not its size (an
    alert on available_bytes would fire on every stopped pool), so they are left out, as the volume count is.

    ``vm_storage_pools,pool=default state="running",capacity_bytes=…,allocation_bytes=…,available_bytes=…,volumes=3i``
    """
    points = []
    for pool in host.get("pools") or ():
        state = pool.get("state")
        fields: Dict[str, FieldValue] = {"state": POOL_STATES.get(state, "unknown")}
        for name, key in POOL_SIZES if state in SIZED_STATES else ():
            value = counter(pool.get(key))
            if value is not None:
                fields[name] = value
        volumes = counter(pool.get("volumes"))
        if volumes is not None:
            fields["volumes"] = volumes
        points.append(Point("vm_storage_pools", with_tags(host_tags(host), ("pool", pool["name"])), fields))
    return points


GROUP = Group(
    name="pools",
    help="vm_storage_pools: capacity and use per storage pool",
    since=10_002,
    calls=("virConnectListAllStoragePools",),
    measurements=("vm_storage_pools",),
    host_call=call,
    host_points=vm_storage_pools,
)
