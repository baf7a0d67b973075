"""``--collect host``: vm_host, the hypervisor's size, load and overcommit, and this collector's own health.

virNodeGetInfo and the versions once, virNodeGetMemoryStats and virNodeGetCPUStats every cycle.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from kvm_telegraf.fields import counter, host_tags
from kvm_telegraf.group import Group, HostMemo, or_none
from kvm_telegraf.libvirt_facts import KIB, STATE_PAUSED, STATE_RUNNING, STATE_SHUTOFF, version_text
from kvm_telegraf.points import FieldValue, Point
from kvm_telegraf.snapshot import DomainSample

NODE_INFO_KEYS = ("model", "memory_mib", "cpus", "mhz", "nodes", "sockets", "cores", "threads")
# virNodeGetMemoryStats (KiB) and virNodeGetCPUStats (ns, all CPUs together) keys -> vm_host fields.
MEMORY_FIELDS = (
    ("memory_total_bytes", "total"),
    ("memory_free_bytes", "free"),
    ("memory_available_bytes", "available"),  # the kernel's MemAvailable: where reported (seen on 12.8, not 9.0, 11.3)
    ("memory_buffers_bytes", "buffers"),
    ("memory_cached_bytes", "cached"),
)
CPU_FIELDS = (
    ("cpu_user_ns", "user"),
    ("cpu_system_ns", "kernel"),
    ("cpu_idle_ns", "idle"),
    ("cpu_iowait_ns", "iowait"),
)
HEALTH_FIELDS = ("collect_ns", "nowait_fallback", "domains_not_responding", "config_reads")


def node_facts(conn: Any) -> Dict[str, Any]:
    """virNodeGetInfo, the libvirt and hypervisor versions: fixed while the daemon runs."""
    facts: Dict[str, Any] = dict(zip(NODE_INFO_KEYS, conn.getInfo()))
    facts["libvirt_version"] = or_none(conn.getLibVersion)
    facts["hypervisor_version"] = or_none(conn.getVersion)
    return facts


def call(conn: Any, memo: HostMemo) -> Dict[str, Any]:
    """``{"node": {...}, "memory": {...}, "cpu": {...}}``, each where libvirt answered."""
    host: Dict[str, Any] = {}
    node = memo.once("node", lambda: or_none(lambda: node_facts(conn)))
    if node is not None:
        host["node"] = node
    memory = or_none(lambda: conn.getMemoryStats(-1, 0))
    if memory:
        host["memory"] = memory
    cpu = or_none(lambda: conn.getCPUStats(-1, 0))
    if cpu:
        host["cpu"] = cpu
    return host


def _ratio(part: int, whole: Any) -> Optional[float]:
    """part / whole, unrounded: a threshold on it compares what libvirt reported, not 3 digits of it."""
    return part / whole if type(whole) is int and whole > 0 else None


def vm_host(host: Mapping[str, Any], domains: Sequence[DomainSample], cycle_ns: Optional[int]) -> List[Point]:
    """The hypervisor: its size and free memory, what its domains allocate, and this collector's own health.

    ``vm_host cpus=2i,memory_total_bytes=25275990016i,memory_free_bytes=21824688128i,domains=2i,…,collect_ns=41230000i``
    """
    fields: Dict[str, FieldValue] = {}
    node = host.get("node") or {}
    if counter(node.get("cpus")) is not None:
        fields["cpus"] = node["cpus"]
    memory = host.get("memory") or {}
    for name, key in MEMORY_FIELDS:
        value = counter(memory.get(key))
        if value is not None:
            fields[name] = value * KIB
    cpu = host.get("cpu") or {}
    for name, key in CPU_FIELDS:
        value = counter(cpu.get(key))
        if value is not None:
            fields[name] = value
    states = [d.stats.get("state.state") for d in domains]
    running = [d for d in domains if d.stats.get("state.state") == STATE_RUNNING]
    fields["domains"] = len(domains)
    fields["domains_running"] = len(running)
    fields["domains_paused"] = states.count(STATE_PAUSED)
    fields["domains_shutoff"] = states.count(STATE_SHUTOFF)
    vcpus = sum(counter(d.stats.get("vcpu.current")) or 0 for d in running)
    allocated = sum((counter(d.stats.get("balloon.maximum")) or 0) * KIB for d in running)
    fields["vcpus_allocated"] = vcpus
    overcommit = _ratio(vcpus, node.get("cpus"))
    if overcommit is not None:
        fields["vcpu_overcommit"] = overcommit
    fields["memory_allocated_bytes"] = allocated
    if "memory_total_bytes" in fields:
        memory_overcommit = _ratio(allocated, fields["memory_total_bytes"])
        if memory_overcommit is not None:
            fields["memory_overcommit"] = memory_overcommit
    for name in ("libvirt_version", "hypervisor_version"):
        number = counter(node.get(name))
        if number is not None:
            fields[name] = version_text(number)
    health = host.get("health") or {}
    for name in HEALTH_FIELDS:
        if name in health:
            fields[name] = health[name]
    if cycle_ns is not None:
        fields["cycle_ns"] = cycle_ns
    return [Point("vm_host", host_tags(host), fields)]


GROUP = Group(
    name="host",
    help="vm_host: the hypervisor's size, load, overcommit and our own health",
    since=9_003,
    calls=("virNodeGetInfo", "virNodeGetMemoryStats", "virNodeGetCPUStats"),
    measurements=("vm_host",),
    host_call=call,
    host_points=vm_host,
)
