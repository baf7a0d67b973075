"""Re-record the golden snapshots from live lab guests with ``kvm-telegraf record``.

Run by ``make goldens``. Each scenario sets the lab guests up as it needs,
then records two cycles so the derived fields (cpu_percent) are pinned too.
A changed golden after this is a schema change: the README must say so.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "lab"))

import lab  # noqa: E402

KVM_TELEGRAF = str(Path(sys.executable).with_name("kvm-telegraf"))
# Every character libvirt allows that line protocol must escape, plus a trailing backslash.
HOSTILE_NAME = 'ktlab-03 ünïcødé, a=b "q" \\x\\'


def record(name: str, domains: list) -> None:
    selectors = [arg for domain in domains for arg in ("--domain", domain)]
    out = TESTS / "snapshots" / name
    out.parent.mkdir(exist_ok=True)
    subprocess.run([KVM_TELEGRAF, *selectors, "record", str(out), "--cycles", "2", "--every", "2s"], check=True)


def main() -> None:
    names = lab.up(3)
    time.sleep(5)  # let the guests' I/O loops move every counter
    record("lab-running.json", names[:2])
    lab.virsh("suspend", names[1])
    lab.virsh("destroy", names[2])
    record("lab-states.json", names)  # running, paused, shut off
    lab.virsh("resume", names[1])
    # The same guest, booted again under a name that needs every escape.
    lab.virsh("domrename", names[2], HOSTILE_NAME)
    try:
        lab.virsh("start", HOSTILE_NAME)
        time.sleep(15)  # boot, then a few I/O loops
        record("lab-odd-names.json", [HOSTILE_NAME])
    finally:
        lab.virsh("destroy", HOSTILE_NAME, check=False)
        lab.virsh("domrename", HOSTILE_NAME, names[2])


if __name__ == "__main__":
    main()
