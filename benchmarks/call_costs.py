"""What each ``--collect`` group's own call costs, per domain or per host: the median of REPS calls.

Timed from Python over a read-only connection, the way docs/metrics.md's cost column was measured
(wall time of the round trip: libvirtd and, where the call asks it, the guest's QEMU).

    .venv/bin/python -m benchmarks.call_costs [--domain GLOB ...] [--reps 25]
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

from kvm_telegraf.groups import hostdevs
from kvm_telegraf.libvirt_facts import (
    JOB_STATS_COMPLETED,
    JOB_STATS_KEEP_COMPLETED,
    NODE_DEVICES_MDEV,
    NODE_DEVICES_PCI,
    STATE_PAUSED,
    STATE_RUNNING,
)

COMPLETED = JOB_STATS_COMPLETED | JOB_STATS_KEEP_COMPLETED  # the jobs group's second call


def median_ms(call: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", action="append", default=[], help="glob (repeatable); default: every domain")
    parser.add_argument("--reps", type=int, default=25)
    args = parser.parse_args(argv)
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly("qemu:///system")
    domains = [
        dom
        for dom in conn.listAllDomains(0)
        if not args.domain or any(fnmatch.fnmatchcase(dom.name(), glob) for glob in args.domain)
    ]
    per_domain: Dict[str, List[float]] = {"virDomainGetDiskErrors": [], "virDomainGetJobStats x2": []}
    for dom in domains:
        state = dom.state()[0]
        if state not in (STATE_RUNNING, STATE_PAUSED):
            continue
        per_domain["virDomainGetDiskErrors"].append(median_ms(lambda dom=dom: dom.diskErrors(0), args.reps))
        if state == STATE_RUNNING:
            per_domain["virDomainGetJobStats x2"].append(
                median_ms(lambda dom=dom: (dom.jobStats(0), dom.jobStats(COMPLETED)), args.reps)
            )
    per_host = {
        "virNodeGetCPUStats": median_ms(lambda: conn.getCPUStats(-1, 0), args.reps),
        "virNodeGetMemoryStats": median_ms(lambda: conn.getMemoryStats(-1, 0), args.reps),
        "node devices (hostdevs, per --features-refresh)": median_ms(lambda: hostdevs.node_devices(conn), args.reps),
    }
    print(f"median of {args.reps} calls, libvirt {conn.getLibVersion()}:")
    for name, medians in per_domain.items():
        if medians:
            print(f"  {name}: {statistics.median(medians):.3f} ms per domain ({len(medians)} domains)")
    for name, value in per_host.items():
        print(f"  {name}: {value:.3f} ms per host")
    print(f"  ({len(conn.listAllDevices(NODE_DEVICES_PCI | NODE_DEVICES_MDEV))} node devices listed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
