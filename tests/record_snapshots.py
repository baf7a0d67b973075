"""Re-record the golden snapshots from live lab guests with ``kvm-telegraf record``.

Run by ``make goldens`` (all scenarios), or ``python tests/record_snapshots.py nova``
for one. Each scenario sets the lab guests up as it needs, then records two
cycles so the derived fields (cpu_percent) are pinned too. A changed golden
after this is a schema change: the README must say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "lab"))

import flavours  # noqa: E402 - tests/lab/flavours.py
import lab  # noqa: E402

from kvm_telegraf.snapshot import snapshot_to_json, snapshots_from_json  # noqa: E402

KVM_TELEGRAF = str(Path(sys.executable).with_name("kvm-telegraf"))
# Every character libvirt allows that line protocol must escape, plus a trailing backslash.
HOSTILE_NAME = 'ktlab-03 ünïcødé, a=b "q" \\x\\'


def record(name: str, domains: list, options: tuple = (), cycles: int = 2, every: str = "2s") -> None:
    subprocess.run(record_argv(name, domains, options, cycles, every), check=True)


def record_argv(name: str, domains: list, options: tuple = (), cycles: int = 2, every: str = "2s") -> list:
    selectors = [arg for domain in domains for arg in ("--domain", domain)]
    out = TESTS / "snapshots" / name
    out.parent.mkdir(exist_ok=True)
    return [KVM_TELEGRAF, *selectors, *options, "record", str(out), "--cycles", str(cycles), "--every", every]


NOVA_PREFIX = "ktnova-"
NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
# What Nova 25 writes into <metadata> (its LibvirtConfigGuestMetaNovaInstance and friends), in
# the element order it uses; libvirt puts every element into the namespace given with --uri.
NOVA_INSTANCE = """<instance>
  <package version="25.1.0"/>
  <name>web frontend 01</name>
  <creationTime>2025-11-03 09:12:44</creationTime>
  <flavor name="kt.tiny">
    <memory>96</memory>
    <disk>0</disk>
    <swap>0</swap>
    <ephemeral>0</ephemeral>
    <vcpus>2</vcpus>
  </flavor>
  <owner>
    <user uuid="6f1e0c3c4b2a4d0e9a7b5c3d1e2f4a6b">admin</user>
    <project uuid="0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f">demo</project>
  </owner>
  <root type="image" uuid="3b0e6f5c-2d4a-4e8b-9c1d-7a6f5e4d3c2b"/>
  <ports>
    <port uuid="8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d">
      <ip type="fixed" address="169.254.10.2" ipVersion="4"/>
    </port>
  </ports>
</instance>"""


def lab_with_prefix(prefix: str, *args: str) -> list:
    """tests/lab/lab.py in a subprocess under its own name prefix; the names it prints."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_PREFIX": prefix}
    done = subprocess.run(
        [sys.executable, str(TESTS / "lab" / "lab.py"), *args], env=env, check=True, stdout=subprocess.PIPE
    )
    return done.stdout.decode().split()


def record_nova() -> None:
    """A running guest carrying Nova's instance metadata, set through libvirt as Nova's define does."""
    (name,) = lab_with_prefix(NOVA_PREFIX, "up", "1")
    try:
        instance = re.sub(r">\s+<", "><", NOVA_INSTANCE)  # libvirt indents it then, as Nova's XML is
        lab.virsh("metadata", name, "--uri", NOVA_NS, "--key", "nova", "--set", instance, "--live", "--config")
        time.sleep(3)
        record("nova-metadata.json", [name])
    finally:
        lab_with_prefix(NOVA_PREFIX, "down")


def record_lab() -> None:
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


GROUPS_PREFIX = "ktgroups-"
KVM_PREFIX = "ktkvm-"
# What libvirt reports for a disk after `virsh blkdeviotune` with these limits.
IOTUNE = (
    "--total-iops-sec",
    "500",
    "--read-bytes-sec",
    "1048576",
    "--write-bytes-sec",
    "2097152",
    "--write-bytes-sec-max",
    "4194304",
)


def record_groups() -> None:
    """--collect all: a guest with pinned vCPUs, two IOThreads, an I/O limit and a dump job in progress;
    a type='kvm' guest (KVM's own counters); a dir storage pool."""
    (name,) = lab_with_prefix(GROUPS_PREFIX, "up", "1", "--variant", "groups")
    (kvm,) = lab_with_prefix(KVM_PREFIX, "up", "1", "--kvm", "--no-wait")
    try:
        lab_with_prefix(GROUPS_PREFIX, "pool-up")
        lab.virsh("blkdeviotune", name, "vdb", *IOTUNE, "--live")
        time.sleep(5)
        dump = lab.dump_slowly(name)
        try:
            time.sleep(1)  # the job has begun; two cycles 2 s apart see it move, a third may see it finish
            record("lab-groups.json", [name, kvm], ("--collect", "all"), cycles=3)
        finally:
            dump.wait()
    finally:
        lab_with_prefix(GROUPS_PREFIX, "pool-down")
        lab_with_prefix(KVM_PREFIX, "down")
        lab_with_prefix(GROUPS_PREFIX, "down")


CHAIN_PREFIX = "ktchain-"
THRESHOLD = "64M"  # beyond what the guest's I/O loop writes into the overlay, so the event never clears it


def record_backing() -> None:
    """--collect all with BACKING: a guest whose vdb is a qcow2 overlay on a raw backing file, with a write
    threshold set on the overlay (virsh domblkthreshold); its balloon reports stats every 2 s."""
    (name,) = lab_with_prefix(CHAIN_PREFIX, "up", "1", "--variant", "chain")
    try:
        lab.virsh("domblkthreshold", name, "vdb", THRESHOLD)
        time.sleep(5)
        record("lab-backing.json", [name], ("--collect", "all"))
    finally:
        lab_with_prefix(CHAIN_PREFIX, "down")


EVENTS_PREFIX = "kte-"
EVENTS_NS = "http://example.org/kvm-telegraf/e2e"


def record_events() -> None:
    """``--collect events`` over three cycles: a destroy and start, a suspend and resume, a metadata change."""
    (name,) = lab_with_prefix(EVENTS_PREFIX, "up", "1")
    out = TESTS / "snapshots" / "lab-events.json"
    argv = [KVM_TELEGRAF, "--collect", "events", "--domain", name, "record", str(out), "--cycles", "3", "--every", "6s"]
    try:
        recording = subprocess.Popen(argv)
        time.sleep(2)  # after the first cycle, which opened the connection and subscribed
        lab.virsh("destroy", name)
        lab.virsh("start", name)
        time.sleep(6)  # the second cycle, then the third's events
        lab.virsh("suspend", name)
        lab.virsh("resume", name)
        lab.virsh("metadata", name, "--live", "--uri", EVENTS_NS, "--key", "e2e", "--set", "<owner team='blue'/>")
        if recording.wait(timeout=60):
            raise SystemExit("record failed")
    finally:
        lab_with_prefix(EVENTS_PREFIX, "down")


GUEST_PREFIX = "ktguest-"


def record_guest() -> None:
    """``--read-write --collect guest``: two guests with a real agent and an ext2 filesystem, the second's agent
    stopped (SIGSTOP in the guest), so its call hangs past the deadline."""
    names = lab_with_prefix(GUEST_PREFIX, "up", "2", "--variant", "agent")
    try:
        time.sleep(3)  # the agents have connected and the guests' loops have run
        lab.agent_stop(names[1])
        time.sleep(3)  # the guest's loop reads the mark within a second
        record("lab-guest.json", names, ("--read-write", "--collect", "guest"))
    finally:
        lab.agent_stop(names[1], stop=False)
        lab_with_prefix(GUEST_PREFIX, "down")


IDENTITY_PREFIX, FULL_PREFIX, HOSTDEVS_PREFIX, RING_PREFIX = "ktanci-", "ktancf-", "ktanch-", "ktancd-"


def wait_paused_by_io_error(name: str, timeout: float = 90.0) -> None:
    """Until the full variant's guest has filled its disk and QEMU paused it (state paused, reason I/O error)."""
    deadline = time.monotonic() + timeout
    while lab.virsh("domstate", name, "--reason").strip() != "paused (I/O error)":
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not pause on its full disk within {timeout:.0f} s")
        time.sleep(1)


def record_anchors() -> None:
    """--collect all on four guests: one with a serial, a CD-ROM, a NIC on a libvirt network and one on its bridge
    with a target dev of its own, a page-sampling dirty-rate calculation and a dump in progress (read until it ends);
    one paused by its full disk (error_policy stop); one defined with host devices (a PCI device of this machine,
    an mdev, a USB device, an SR-IOV NIC); a type='kvm' one with KVM's dirty ring and a dirty-ring calculation."""
    prefixes = (IDENTITY_PREFIX, FULL_PREFIX, HOSTDEVS_PREFIX, RING_PREFIX)
    try:
        (identity,) = lab_with_prefix(IDENTITY_PREFIX, "up", "1", "--variant", "identity", "--no-wait")
        (full,) = lab_with_prefix(FULL_PREFIX, "up", "1", "--variant", "full", "--no-wait")
        (hostdevs,) = lab_with_prefix(HOSTDEVS_PREFIX, "up", "1", "--variant", "hostdevs", "--define-only")
        (ring,) = lab_with_prefix(RING_PREFIX, "up", "1", "--kvm", "--variant", "dirtyring", "--no-wait")
        wait_paused_by_io_error(full)
        lab.virsh("domdirtyrate-calc", identity, "--seconds", "1")
        lab.virsh("domdirtyrate-calc", ring, "--seconds", "1", "--mode", "dirty-ring")
        time.sleep(3)  # the calculations have ended; the guests' loops have run
        dump = lab.dump_slowly(identity)
        try:
            time.sleep(1)  # the job has begun; 8 cycles 2 s apart see it move and finish (~10 s at 10 MiB/s)
            record("lab-anchors.json", [identity, full, hostdevs, ring], ("--collect", "all"), cycles=8)
        finally:
            dump.wait()
    finally:
        for prefix in prefixes:
            lab_with_prefix(prefix, "down")


SID_STATS_PREFIX = "ktsidst-"
SID_GROUPS_PREFIX = "ktsidgr-"


def lab_on(flavour: str, prefix: str, *args: str) -> list:
    """tests/lab/lab.py under a flavour's libvirtd (tests/lab/flavours.py) and a name prefix of its own."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_FLAVOUR": flavour, "KVM_TELEGRAF_LAB_PREFIX": prefix}
    done = subprocess.run(
        [sys.executable, str(TESTS / "lab" / "lab.py"), *args], env=env, check=True, stdout=subprocess.PIPE
    )
    return done.stdout.decode().split()


def record_sid() -> None:
    """``--collect all`` on the sid flavour (libvirt 12.8, QEMU 11.1), four cycles 5 s apart: a guest whose disks
    have timed statistics and latency histograms (the stats variant) and one with two IOThreads (the groups
    variant). Between the second and third cycle vdb's histogram is restarted (``virsh update-device`` with its
    own XML, as libvirt documents), a counter reset as a re-plugged disk makes."""
    uri = flavours.uri("sid")
    (stats,) = lab_on("sid", SID_STATS_PREFIX, "up", "1", "--variant", "stats")
    (groups,) = lab_on("sid", SID_GROUPS_PREFIX, "up", "1", "--variant", "groups")
    try:
        time.sleep(12)  # the 10 s interval has a full window of the guest's I/O loop
        vdb = disk_xml(uri, stats, "vdb")
        recording = subprocess.Popen(
            record_argv("sid-stats.json", [stats, groups], ("--uri", uri, "--collect", "all"), 4, "5s")
        )
        time.sleep(7)  # after the second cycle
        subprocess.run(["virsh", "-q", "-c", uri, "update-device", stats, "/dev/stdin", "--live"], input=vdb.encode())
        if recording.wait(timeout=60):
            raise SystemExit("record failed")
    finally:
        lab_on("sid", SID_GROUPS_PREFIX, "down")
        lab_on("sid", SID_STATS_PREFIX, "down")


SID_GUEST_PREFIX = "ktsidag-"


def record_sid_guest() -> None:
    """``--read-write --collect guest`` on the sid flavour: a guest whose agent is sid's qemu-ga, which answers
    libvirt 12.8's request for the load averages (guest-get-load)."""
    (name,) = lab_on("sid", SID_GUEST_PREFIX, "up", "1", "--variant", "agent")
    try:
        time.sleep(3)  # the agent has connected and the guest's loop has run
        record("sid-guest.json", [name], ("--uri", flavours.uri("sid"), "--read-write", "--collect", "guest"))
    finally:
        lab_on("sid", SID_GUEST_PREFIX, "down")


SID_EVENTS_PREFIX = "ktsidev-"
SID_INSIDE_URI = "qemu+unix:///system?socket=/run/libvirt/libvirt-sock"  # the sid daemon, from inside its tree
TRUSTED_MAC = "52:54:00:6b:aa:01"


def record_sid_events() -> None:
    """``--collect events`` on the sid flavour over three cycles 10 s apart, recorded by kvm-telegraf on sid's own
    Python and libvirt-python 12.8 inside the tree (the host's 9.0 binding has no NIC_MAC_CHANGE): a balloon
    change (``virsh setmem``), the guest changing eth0's MAC (through its agent, with trustGuestRxFilters), a write
    past ``domblkthreshold``, then a block copy of vdb run to its end (``blockcopy --finish``)."""
    uri, root = flavours.uri("sid"), flavours.root("sid")
    (name,) = lab_on("sid", SID_EVENTS_PREFIX, "up", "1", "--variant", "agent")
    inside = os.path.join(root, "tmp", "kvm-telegraf-record")
    try:
        xml = virsh_on(uri, "dumpxml", name, "--inactive")
        trusted = xml.replace("<interface type='ethernet'>", "<interface type='ethernet' trustGuestRxFilters='yes'>")
        virsh_on(uri, "define", "/dev/stdin", stdin=trusted)
        virsh_on(uri, "destroy", name)
        virsh_on(uri, "start", name)
        time.sleep(15)  # booted, the agent connected
        shutil.rmtree(inside, ignore_errors=True)
        shutil.copytree(TESTS.parent / "kvm_telegraf", os.path.join(inside, "kvm_telegraf"))
        out = "/tmp/kvm-telegraf-record/sid-events.json"
        argv = ["chroot", root, "env", "PYTHONPATH=/tmp/kvm-telegraf-record", flavours.VENV + "/bin/python"]
        argv += ["-m", "kvm_telegraf", "--uri", SID_INSIDE_URI, "--collect", "events", "--domain", name]
        recording = subprocess.Popen([*argv, "record", out, "--cycles", "3", "--every", "10s"])
        time.sleep(3)  # after the first cycle, which subscribed
        virsh_on(uri, "setmem", name, "94M", "--live")
        exec_in_guest(uri, name, "ip", "link", "set", "eth0", "address", TRUSTED_MAC)
        virsh_on(uri, "domblkthreshold", name, "vda", "65536")  # the loop's next write beyond 64 KiB
        time.sleep(10)  # the second cycle
        copy = os.path.join(lab.guest_dir(name), "vdb-copy.img")
        virsh_on(uri, "blockcopy", name, "vdb", copy, "--transient-job", "--wait", "--finish")
        if recording.wait(timeout=60):
            raise SystemExit("record failed")
        shutil.copy(root + out, TESTS / "snapshots" / "sid-events.json")
    finally:
        shutil.rmtree(inside, ignore_errors=True)
        lab_on("sid", SID_EVENTS_PREFIX, "down")


def virsh_on(uri: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run(["virsh", "-q", "-c", uri, *args], input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


def exec_in_guest(uri: str, name: str, *argv: str) -> None:
    """A busybox command in the guest, through its agent's guest-exec."""
    command = {"execute": "guest-exec", "arguments": {"path": "/bin/busybox", "arg": list(argv)}}
    virsh_on(uri, "qemu-agent-command", name, json.dumps(command))


def disk_xml(uri: str, domain: str, target: str) -> str:
    """The live <disk> element of one target, as ``virsh update-device`` takes it."""
    xml = subprocess.run(["virsh", "-q", "-c", uri, "dumpxml", domain], check=True, capture_output=True, text=True)
    (disk,) = [d for d in re.findall(r"<disk .*?</disk>", xml.stdout, re.S) if f"<target dev='{target}'" in d]
    return disk


def record_flavour(flavour: str) -> None:
    """``--collect all`` on a newer libvirt's own daemon (tests/lab/flavours.py): the default guest and the groups
    variant (two pinned vCPUs, two IOThreads), so the offline suite pins what 11.3 and 12.8 send too."""
    lab_dir = str(TESTS / "lab" / "lab.py")
    env = {k: v for k, v in os.environ.items() if k != "KVM_TELEGRAF_LAB_PREFIX"}

    def flavour_lab(*args: str) -> list:
        argv = [sys.executable, lab_dir, "flavour", args[0], flavour, *args[1:]]
        return subprocess.run(argv, env=env, check=True, stdout=subprocess.PIPE).stdout.decode().split()

    flavour_lab("up", "1")
    names = flavour_lab("up", "2", "--variant", "groups")
    uri = subprocess.run(
        [sys.executable, lab_dir, "flavour", "uri", flavour], check=True, stdout=subprocess.PIPE
    ).stdout.decode()
    try:
        time.sleep(5)  # let the guests' I/O loops move every counter
        record(f"{flavour}-groups.json", names, ("--uri", uri.strip(), "--collect", "all"))
    finally:
        flavour_lab("down")
        flavour_lab("stop")


LIFECYCLE_PREFIX = "ktlife-"
LIFECYCLE_OPTIONS = ("--collect", "backing", "--collect", "pools", "--collect", "host", "--collect", "vcpu")


def record_lifecycle() -> None:
    """One chain guest (vdb a qcow2 overlay on a raw file) through its life, a cycle each: running; vdb unplugged
    and plugged again (libvirt gives its images new indexes); paused (virsh suspend); shut off; started again.
    Beside a running dir pool with one volume, and a dir pool defined but never started (inactive)."""
    (name,) = lab_with_prefix(LIFECYCLE_PREFIX, "up", "1", "--variant", "chain")
    lab_with_prefix(LIFECYCLE_PREFIX, "pool-up")
    idle = LIFECYCLE_PREFIX + "idle"
    parts = []
    try:
        lab.virsh("pool-define-as", idle, "dir", "--target", "/nonexistent/" + idle)

        def part(label: str) -> None:
            out = f"lab-lifecycle-{label}.json"
            record(out, [name], LIFECYCLE_OPTIONS, cycles=1)
            parts.append(TESTS / "snapshots" / out)

        part("running")
        overlay = re.search(r"<source file='([^']*vdb\.qcow2)'", lab.virsh("dumpxml", name)).group(1)
        lab.virsh("detach-disk", name, "vdb", "--live")
        deadline = time.monotonic() + 60
        while "vdb" in lab.virsh("domblklist", name) and time.monotonic() < deadline:
            time.sleep(0.5)
        disk = (
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{overlay}'/><target dev='vdb' bus='virtio'/></disk>"
        )
        xml_path = TESTS / "snapshots" / "lifecycle-vdb.xml"
        xml_path.write_text(disk)
        try:
            lab.virsh("attach-device", name, str(xml_path), "--live")
        finally:
            xml_path.unlink()
        time.sleep(2)
        part("replugged")
        lab.virsh("suspend", name)
        part("paused")
        lab.virsh("resume", name)
        lab.virsh("destroy", name)
        part("shutoff")
        lab.virsh("start", name)
        time.sleep(5)
        part("started")
        snapshots = [snapshot for path in parts for snapshot in snapshots_from_json(path.read_text())]
        (TESTS / "snapshots" / "lab-lifecycle.json").write_text(snapshot_to_json(snapshots) + "\n")
    finally:
        for path in parts:
            path.unlink()
        lab.virsh("pool-undefine", idle, check=False)
        lab_with_prefix(LIFECYCLE_PREFIX, "pool-down")
        lab_with_prefix(LIFECYCLE_PREFIX, "down")


SCENARIOS = {
    "lab": record_lab,
    "nova": record_nova,
    "groups": record_groups,
    "events": record_events,
    "backing": record_backing,
    "lifecycle": record_lifecycle,
    "guest": record_guest,
    "anchors": record_anchors,
    "sid-stats": record_sid,
    "sid-guest": record_sid_guest,
    "sid-events": record_sid_events,
    "trixie": lambda: record_flavour("trixie"),
    "sid": lambda: record_flavour("sid"),
}


def main(argv: list) -> None:
    for name in argv or list(SCENARIOS):
        SCENARIOS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
