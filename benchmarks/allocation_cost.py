"""What each way of getting a raw disk's allocation costs per disk, on a libvirt of the matrix (issue #22).

libvirt >= 11 sends ``block.<i>.allocation=0`` for a raw disk. The ways to get what ``virsh domblkinfo``
calls Allocation:

- ``blockinfo``: virDomainGetBlockInfo, one call per disk per cycle;
- ``bulk``: nothing more: the bulk call's own ``block.<i>.physical`` (what virDomainGetBlockInfo reports then),
  measured as the block group alone so its share of the one call shows;
- (per XML refresh: the same calls as ``blockinfo``, once per --features-refresh instead of per cycle, and
  a stale value in between.)

It runs N rounds of each, side by side in one run, and prints ns of CPU per disk: this process
(process_time_ns), libvirtd's and the guests' QEMU threads (schedstat: ns on CPU), and wall time.

    python3 tests/lab/lab.py flavour up sid 1
    .venv/bin/python -m benchmarks.allocation_cost sid 500
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

import flavours  # noqa: E402

STATS_BLOCK = 32


def on_cpu_ns(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


def pids_of(comm_prefix: str, marker: bytes = b"") -> List[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if comm.startswith(comm_prefix) and marker in argv:
            found.append(int(entry.name))
    return found


def main(flavour: str, rounds: int) -> None:
    import libvirt

    conn = libvirt.openReadOnly(flavours.uri(flavour))
    domains = [d for d in conn.listAllDomains() if d.isActive()]
    disks = [(d, t) for d in domains for t in ("vda", "vdb")]
    root = flavours.root(flavour).encode()
    daemon = [p for p in pids_of("libvirtd") if Path(f"/proc/{p}/root").resolve() == Path(root.decode())]
    qemus = [p for d in domains for p in pids_of("qemu-system", f"guest={d.name()},".encode())]

    def blockinfo() -> None:
        for dom, disk in disks:
            dom.blockInfo(disk)

    def bulk() -> None:
        conn.domainListGetStats(domains, STATS_BLOCK, 0)

    ways: Dict[str, Callable[[], None]] = {"blockinfo": blockinfo, "bulk": bulk}
    print(f"{flavour}: libvirt {conn.getLibVersion()}, {len(domains)} guest(s), {len(disks)} disk(s), {rounds} rounds")
    for name, way in ways.items():
        way()
        wall, client, server, guest = time.monotonic_ns(), time.process_time_ns(), on_cpu_ns(daemon), on_cpu_ns(qemus)
        for _ in range(rounds):
            way()
        per = rounds * len(disks)
        print(
            f"{name:10s} per disk: wall {(time.monotonic_ns() - wall) / per / 1000:7.1f} us, "
            f"client {(time.process_time_ns() - client) / per / 1000:6.1f} us, "
            f"libvirtd {(on_cpu_ns(daemon) - server) / per / 1000:6.1f} us, "
            f"QEMU {(on_cpu_ns(qemus) - guest) / per / 1000:6.1f} us CPU"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
