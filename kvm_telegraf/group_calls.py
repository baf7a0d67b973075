"""The libvirt calls of the ``--collect`` groups that the bulk call cannot answer, as plain data.

They run on one worker per host, after the bulk call, under the cycle's
deadline (kvm_telegraf.collect). Each answer is turned into dicts and lists
right here, so the Snapshot holds plain data that ``record`` saves and the
goldens replay. A call that fails (the domain vanished, a disk without
medium) leaves out only its own entry.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.libvirt_facts import JOB_RUNNING_TYPES, JOB_STATS_COMPLETED, JOB_STATS_KEEP_COMPLETED

# The groups that make calls of their own, per running domain and per host.
DOMAIN_CALL_GROUPS = frozenset({"vcpu", "jobs", "block_limits"})
HOST_CALL_GROUPS = frozenset({"host", "pools"})

# What each domain's calls gave: {"pcpus": {vcpu: pcpu}, "job": {...}, "completed_job": {...}, "iotune": {disk: {...}}}
DomainCalls = Dict[str, Any]


def _or_none(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:  # libvirtError: vanished, unsupported, no medium; only this entry is lost
        return None


def domain_calls(dom: Any, groups: FrozenSet[str], facts: Optional[DomainFacts]) -> DomainCalls:
    """The per-domain calls of *groups* for one running domain."""
    calls: DomainCalls = {}
    if "vcpu" in groups:
        vcpus = _or_none(dom.vcpus)
        if vcpus:
            calls["pcpus"] = {str(number): cpu for number, _state, _time, cpu in vcpus[0]}
    if "jobs" in groups:
        job = _or_none(lambda: dom.jobStats(0))
        # While a dump ends the plain call already answers "completed" (seen on libvirt 9.0): that one is
        # left to the completed read, so it is counted once.
        if job and job.get("type") in JOB_RUNNING_TYPES:
            calls["job"] = job
        # KEEP_COMPLETED: reading must not take a finished job's statistics away from others (Nova reads them);
        # the Collector passes on each completed job once.
        completed = _or_none(lambda: dom.jobStats(JOB_STATS_COMPLETED | JOB_STATS_KEEP_COMPLETED))
        if completed and completed.get("type"):
            calls["completed_job"] = completed
    if "block_limits" in groups and facts is not None:
        limits = {}
        for disk in facts.disks:
            tune = _or_none(lambda disk=disk: dom.blockIoTune(disk, 0))
            if tune:
                limits[disk] = {key: value for key, value in tune.items() if value}  # 0 and "": not set
        calls["iotune"] = limits
    return calls


@dataclass
class HostCache:
    """What the host calls keep between cycles: node info once per connection, the pools per refresh."""

    refresh_s: float
    monotonic: Callable[[], float] = time.monotonic
    node: Optional[Dict[str, Any]] = None
    pools: Optional[List[Dict[str, Any]]] = None
    _pools_at: float = field(default=0.0, init=False)

    def forget(self) -> None:
        self.node, self.pools = None, None

    def pools_due(self) -> bool:
        return self.pools is None or self.monotonic() - self._pools_at >= self.refresh_s

    def keep_pools(self, pools: List[Dict[str, Any]]) -> None:
        self.pools, self._pools_at = pools, self.monotonic()


NODE_INFO_KEYS = ("model", "memory_mib", "cpus", "mhz", "nodes", "sockets", "cores", "threads")


def node_facts(conn: Any) -> Dict[str, Any]:
    """virNodeGetInfo, the libvirt and hypervisor versions: fixed for the life of a connection."""
    facts: Dict[str, Any] = dict(zip(NODE_INFO_KEYS, conn.getInfo()))
    facts["libvirt_version"] = _or_none(conn.getLibVersion)
    facts["hypervisor_version"] = _or_none(conn.getVersion)
    return facts


def pool_facts(conn: Any) -> List[Dict[str, Any]]:
    """Every storage pool: name, state, sizes in bytes, and the volume count of an active one."""
    pools = []
    for pool in conn.listAllStoragePools(0):
        info = _or_none(pool.info)
        if info is None:
            continue
        state, capacity, allocation, available = info
        entry = {"name": pool.name(), "state": state, "capacity": capacity, "allocation": allocation}
        entry["available"] = available
        if pool.isActive():
            volumes = _or_none(pool.numOfVolumes)
            if volumes is not None:
                entry["volumes"] = volumes
        pools.append(entry)
    return sorted(pools, key=lambda entry: entry["name"])


def host_calls(conn: Any, groups: FrozenSet[str], cache: HostCache) -> Dict[str, Any]:
    """The per-host calls of *groups*: node info (cached), memory stats, the pools (cached per refresh)."""
    host: Dict[str, Any] = {}
    if "host" in groups:
        if cache.node is None:
            cache.node = _or_none(lambda: node_facts(conn))
        if cache.node is not None:
            host["node"] = cache.node
        memory = _or_none(lambda: conn.getMemoryStats(-1, 0))
        if memory:
            host["memory"] = memory
    if "pools" in groups:
        if cache.pools_due():
            pools = _or_none(lambda: pool_facts(conn))
            if pools is not None:
                cache.keep_pools(pools)
        if cache.pools is not None:
            host["pools"] = cache.pools
    return host


@dataclass
class CallRun:
    """One cycle's calls as they come in: what is done so far, and the domain being asked now.

    The worker fills it; the collector takes what is in at its deadline, and a domain
    still ``current`` on a worker that missed it (its QEMU hangs) is not asked again
    until that call returns.
    """

    results: queue.SimpleQueue[Tuple[str, Any]] = field(default_factory=queue.SimpleQueue)
    current: Optional[str] = None  # the UUID whose calls are out

    def taken(self) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        """(host data, per-domain data by UUID) that came in so far."""
        host: Dict[str, Any] = {}
        per_domain: Dict[str, DomainCalls] = {}
        while True:
            try:
                key, value = self.results.get_nowait()
            except queue.Empty:
                return host, per_domain
            if key == HOST_KEY:
                host = value
            else:
                per_domain[key] = value


HOST_KEY = ""  # no UUID is empty


def all_calls(
    conn: Any,
    groups: FrozenSet[str],
    cache: HostCache,
    domains: Sequence[Tuple[Any, Optional[DomainFacts]]],
    run: CallRun,
) -> None:
    """One cycle's calls: the host's first, then each domain's, each result handed over as it comes."""
    if groups & HOST_CALL_GROUPS:
        run.results.put((HOST_KEY, host_calls(conn, groups, cache)))
    if groups & DOMAIN_CALL_GROUPS:
        for dom, facts in domains:
            uuid = dom.UUIDString()
            run.current = uuid
            run.results.put((uuid, domain_calls(dom, groups, facts)))
    run.current = None
