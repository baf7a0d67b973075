"""``--collect latency_histogram``: vm_disk_latency_histogram, QEMU's latency histograms and percentiles from them.

A disk whose ``<driver><statistics>`` has a ``<latency-histogram>`` (libvirt 12.1) makes the bulk stats carry,
per kind of request, the bins' starts and how many requests fell into each since the histogram began
(``block.<i>.latency_histogram.<kind>.bin.<j>.{start,value}``). The bin counts are counters; the
percentiles are estimated over the last cycle from the difference of the counts between this cycle and the
previous one, which the group carries over (Group.carry). Pure: no clock, no call.

How a percentile is estimated: the cycle's requests of a kind are ``n``, the differences of the bins' counts.
The p-th percentile is the ``ceil(p * n / 100)``-th request in latency order, so it lies in the bin where
the running sum of the differences reaches that rank. Inside a bin, from its start to the next bin's start,
its ``d`` requests are taken as spread evenly: the ``k``-th of them sits at ``start + (k - 1/2) / d`` of the
bin's width (linear within the bin), rounded down to a whole ns, so the estimate never leaves its bin. The
last bin has no end: a percentile that falls there is that bin's start, a lower bound. A cycle without a
request of a kind writes no percentile of it (not 0); nor does a first cycle, nor one after a counter reset.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.measurements import device_tags, disk_entries
from kvm_telegraf.points import Point

# (field prefix, libvirt's kind, the block counter of the same requests); zone appends have no such counter.
KINDS = (("read", "read", "rd.reqs"), ("write", "write", "wr.reqs"), ("flush", "flush", "fl.reqs"))
ZONE_APPEND = ("zone_append", "zone_append", "")
PERCENTILES = (50, 90, 99)


class Histogram(NamedTuple):
    """One kind's histogram of one disk as read this cycle, and the count of its requests in the block stats."""

    starts: Tuple[int, ...]  # each bin's lower bound in ns, ascending; a bin ends where the next begins
    counts: Tuple[int, ...]  # requests per bin since the histogram began
    requests: Optional[int]  # rd.reqs / wr.reqs / fl.reqs: a reset shows there too


DiskHistograms = Dict[str, Histogram]  # field prefix (read, write, ...) -> its histogram


def histogram(stats: Stats, prefix: str, requests_key: str) -> Optional[Histogram]:
    """The histogram under *prefix* (``block.<i>.latency_histogram.<kind>.``), or None when incomplete."""
    starts, counts = [], []
    for j in range(counter(stats.get(prefix + "bin.count")) or 0):
        start, value = counter(stats.get(f"{prefix}bin.{j}.start")), counter(stats.get(f"{prefix}bin.{j}.value"))
        if start is None or value is None or (starts and start <= starts[-1]):
            return None
        starts.append(start)
        counts.append(value)
    if not starts:
        return None
    return Histogram(tuple(starts), tuple(counts), counter(stats.get(requests_key)) if requests_key else None)


def disk_histograms(stats: Stats) -> Dict[str, DiskHistograms]:
    """Per disk target, its histograms by kind; zone appends only where the disk has made any."""
    disks: Dict[str, DiskHistograms] = {}
    for disk, prefix in disk_entries(stats):
        kinds: DiskHistograms = {}
        for name, kind, requests in (*KINDS, ZONE_APPEND):
            found = histogram(stats, f"{prefix}latency_histogram.{kind}.", prefix + requests if requests else "")
            if found is not None and (kind != "zone_append" or any(found.counts)):
                kinds[name] = found
        if kinds:
            disks[disk] = kinds
    return disks


def cycle_counts(now: Histogram, before: Optional[Histogram]) -> Optional[Tuple[int, ...]]:
    """The requests per bin since the previous cycle; None when there is no previous cycle or a counter reset.

    A reset (the histogram restarted with ``virsh update-device``, a disk unplugged and plugged again, the
    bins changed) shows as a bin that went down, other bins, a request counter that went down, or fewer
    requests in the histogram than the block stats counted meanwhile.
    """
    if before is None or before.starts != now.starts:
        return None
    counts = tuple(a - b for a, b in zip(now.counts, before.counts))
    if min(counts) < 0:
        return None
    if now.requests is not None and before.requests is not None:
        requests = now.requests - before.requests
        if requests < 0 or sum(counts) < requests:
            return None
    return counts


def percentile(starts: Sequence[int], counts: Sequence[int], p: int) -> Optional[int]:
    """The p-th percentile (0 < p <= 100) of the requests binned as *counts*, in ns; None when there are none."""
    total = sum(counts)
    if not total:
        return None
    rank = max(1, -(-p * total // 100))  # ceil(p * total / 100), in integers: 0.9 * 10 is not 9 in floats
    below = 0
    for j, count in enumerate(counts):
        if below + count >= rank:
            if j + 1 == len(starts):
                return starts[j]  # the open last bin: its start, a lower bound
            width = starts[j + 1] - starts[j]
            return starts[j] + int((rank - below - 0.5) * width / count)
        below += count
    raise AssertionError("unreachable: the ranks stop at the total")


def histogram_fields(now: DiskHistograms, before: Optional[DiskHistograms]) -> Fields:
    """One disk's bin counts (counters), then the percentiles of the cycle's requests per kind."""
    fields: Fields = {}
    for name, found in now.items():
        for start, count in zip(found.starts, found.counts):
            fields[f"{name}_bin_{start}"] = count
    for name, found in now.items():
        counts = cycle_counts(found, before.get(name) if before else None)
        for p in PERCENTILES if counts else ():
            value = percentile(found.starts, counts, p)  # type: ignore[arg-type]
            if value is not None:
                fields[f"{name}_latency_p{p}_ns"] = value
    return fields


def vm_disk_latency_histogram(view: DomainView) -> List[Point]:
    """One point per disk with a histogram: the bin counts, and the last cycle's estimated percentiles.

    ``vm_disk_latency_histogram,device=vda,type=disk,uuid=1b4e…,vm=web01 read_bin_0=0i,read_bin_10000=1i,…,read_latency_p99_ns=186000i``
    """
    domain = view.domain
    before: Dict[str, DiskHistograms] = view.carried or {}
    points = []
    for disk, kinds in disk_histograms(domain.stats).items():
        fields = histogram_fields(kinds, before.get(disk))
        points.append(Point("vm_disk_latency_histogram", device_tags(domain, disk, "disk", view.extra), fields))
    return points


def carried(view: DomainView) -> Any:
    """This cycle's histograms, which the next cycle's percentiles start from; the earlier ones when the domain's
    QEMU did not answer this cycle (its stats lack them), so the next percentiles span both cycles."""
    return disk_histograms(view.domain.stats) if view.domain.responding else view.carried


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    """A disk with a histogram of any kind."""
    return bool(disk_histograms(stats))


GROUP = Group(
    name="latency_histogram",
    help="vm_disk_latency_histogram: QEMU's latency histogram bins per disk, and p50/p90/p99 of the last cycle",
    since=12_001_000,
    measurements=("vm_disk_latency_histogram",),
    points=vm_disk_latency_histogram,
    carry=carried,
    enabled=enabled,
    enable_hint="<statistics><latency-histogram><bin start='0'/><bin start='100000'/>…</latency-histogram>"
    "</statistics> inside each disk's <driver> in the domain XML (libvirt 12.1 or later)",
)
