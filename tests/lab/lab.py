#!/usr/bin/env python3
"""Test lab for kvm-telegraf: small TCG guests under a local libvirtd.

Usable as a module (``import lab``) and as a CLI::

    python3 tests/lab/lab.py up N [--kvm] [--timeout S]
    python3 tests/lab/lab.py down | pause | resume | status | daemons | build

Each guest (``ktlab-01`` .. ``ktlab-NN``) boots a Debian kernel straight into a
busybox initramfs whose /init loops forever: direct I/O on vda and vdb, a
gratuitous ARP plus an IPv6 all-nodes ping on eth0 and eth1, then sleep 1.
The virtio balloon reports memory stats every 2 s.

Stdlib only; talks to libvirt through ``virsh`` (argv lists, never a shell).
Everything it builds lives outside the repo in $KVM_TELEGRAF_LAB_CACHE
(default /var/cache/kvm-telegraf-lab).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import grp
import gzip
import hashlib
import io
import json
import lzma
import os
import pwd
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

import flavours  # beside this file: tests/lab/flavours.py

# Which libvirt the lab runs its guests under: the host's (default), or a tree's (tests/lab/flavours.py).
FLAVOUR = os.environ.get("KVM_TELEGRAF_LAB_FLAVOUR", flavours.HOST)
# Separate labs side by side (the benchmark uses ktbench-): `down` removes only its own prefix.
LAB_PREFIX = os.environ.get("KVM_TELEGRAF_LAB_PREFIX", flavours.flavour(FLAVOUR).prefix)
URI = flavours.uri(FLAVOUR)
# The daemon's root on the host: a path the daemon names (a disk image) is ROOT + that path here.
ROOT = flavours.root(FLAVOUR)
CACHE_DIR = flavours.CACHE_DIR

PACKAGES = (
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "busybox-static",
    "cpio",
    "dbus",
    "polkitd",
)

# Load order matters: each one depends on those before it.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_balloon",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
)

GUEST_MEM_MIB = 96
DISK_MIB = 8
DISKS = ("vda", "vdb")
NICS = 2
# acpi=noirq: skips ACPI PCI interrupt-link setup, ~0.4 s per device under TCG.
# no_timer_check: on a loaded host a TCG guest can miss the kernel's IO-APIC timer check and panic
# ("IO-APIC + timer doesn't work"); seen with 20 guests booting on 2 cores.
CMDLINE = "console=ttyS0 quiet panic=-1 acpi=noirq no_timer_check"
DEFAULT_TIMEOUT = 90.0  # for up to 4 booting guests; +5 s for each one more
POLKITD = "/usr/lib/polkit-1/polkitd"
BUSYBOX = "/bin/busybox"
TELEGRAF_USER = "telegraf"

# Bump when the initramfs layout changes in a way the hash below cannot see.
INITRD_FORMAT = "1"
# Bump when the way vmlinux is derived from vmlinuz changes.
VMLINUX_FORMAT = "1"

INIT_SCRIPT = r"""#!/bin/busybox sh
# kvm-telegraf lab guest. Generates block, net and memory activity forever.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m.ko || echo "ktlab: insmod $m failed"
done
i=0
while [ $i -lt 100 ]; do
    [ -b /dev/vda ] && [ -b /dev/vdb ] && [ -e /sys/class/net/eth1 ] && break
    sleep 0.1; i=$((i+1))
done
ip link set lo up
n=0
for nic in eth0 eth1; do
    ip link set $nic up
    ip addr add 169.254.1$n.2/24 dev $nic
    n=$((n+1))
done
echo "ktlab: guest up: $(ls /dev | grep '^vd' | tr '\n' ' ')$(ls /sys/class/net | tr '\n' ' ')"
n=0
while :; do
    # Network: announce our own address (gratuitous ARP) and ping all
    # IPv6 nodes on the link: only the host's end of the tap answers.
    # No other address is ever targeted.
    arping -q -U -c 1 -w 1 -I eth0 169.254.10.2 >/dev/null 2>&1 &
    arping -q -U -c 1 -w 1 -I eth1 169.254.11.2 >/dev/null 2>&1 &
    ping6 -q -c 1 -W 1 -I eth0 ff02::1 >/dev/null 2>&1 &
    ping6 -q -c 1 -W 1 -I eth1 ff02::1 >/dev/null 2>&1 &
    # Block: one 64 KiB direct write and read per disk.
    b=$((n % 64))
    for d in vda vdb; do
        dd if=/dev/zero of=/dev/$d bs=64k count=1 seek=$b oflag=direct conv=notrunc status=none
        dd if=/dev/$d of=/dev/null bs=64k count=1 skip=$b iflag=direct status=none
    done
    # Memory: a little page cache churn now and then.
    if [ $((n % 10)) -eq 0 ]; then
        dd if=/dev/zero of=/tmp/ballast bs=64k count=32 status=none
        rm -f /tmp/ballast
    fi
    sleep 1
    wait
    n=$((n+1))
done
"""


# The "agent" variant: a real QEMU guest agent (Debian's qemu-guest-agent, its binary and the shared
# libraries ldd lists) and an ext2 filesystem on a third disk, in an initramfs of its own beside the
# default one, so the default guest and its cache stamp stay as they are.
AGENT_MODULES = ("virtio_console", "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4")  # ext4 serves ext2
AGENT_PACKAGE = "qemu-guest-agent"
AGENT_DISK = "vdc"
AGENT_DISK_MIB = 16
# Under a flavour's daemon the agent comes from that Debian release (libvirt 11.2 asks newer agents for the
# load averages, guest-get-load), in an initramfs of its own.
AGENT_INITRD = "initrd-agent.img" if FLAVOUR == flavours.HOST else f"initrd-agent-{FLAVOUR}.img"
# Written by the host at this offset of vda.img: the guest's loop reads it and stops (SIGSTOP) or
# resumes (SIGCONT) its agent. The guest's own I/O loop only touches vda's first 4 MiB.
AGENT_MARK_OFFSET = 7 << 20
AGENT_STOP_MARK = b"KTLAB-AGENT-STOP"
# The next 4 KiB block: the guest's loop reads this mark once and makes its agent's answer as big as a guest can
# (a hostile guest): a 4,000,000-byte ID= in /etc/os-release and 2,000 bind mounts of /mnt/data (qemu-ga reports
# each; libvirt carries at most 2,048 parameters). It lasts until the guest is destroyed. Only a "flood" guest has
# the memory for it: a 96 MiB agent guest ran out of memory writing the file (its kernel panicked).
AGENT_FLOOD_OFFSET = AGENT_MARK_OFFSET + 4096
AGENT_FLOOD_MARK = b"KTLAB-AGENT-FLOOD"
AGENT_FLOOD_ID_BYTES = 4_000_000
AGENT_FLOOD_MOUNTS = 2000
AGENT_OS_RELEASE = 'ID=ktlab\nVERSION_ID="1.0"\nNAME="kvm-telegraf lab"\nPRETTY_NAME="kvm-telegraf lab guest"\n'
AGENT_SETUP = r"""
# The guest agent: an ext2 filesystem on vdc, then qemu-ga on the org.qemu.guest_agent.0 port.
mkdir -p /mnt/data /run /var/run /etc
hostname ktlab-agent
i=0
while [ ! -b /dev/vdc ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mke2fs -q /dev/vdc >/dev/null && mount -t ext2 /dev/vdc /mnt/data || echo "ktlab: no ext2 on vdc"
port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
    port=/dev/$(basename $p)
    [ -e $port ] || mknod $port c $(cut -d: -f1 $p/dev) $(cut -d: -f2 $p/dev)
done
if [ -n "$port" ]; then
    /usr/sbin/qemu-ga -m virtio-serial -p $port -t /run -f /run/qemu-ga.pid -d || echo "ktlab: qemu-ga failed"
else
    echo "ktlab: no guest agent port"
fi
"""
AGENT_LOOP = r"""
    # The host's mark on vda stops or resumes the agent (tests: an agent that hangs).
    if dd if=/dev/vda bs=4k count=1 skip=1792 iflag=direct status=none | grep -q KTLAB-AGENT-STOP; then
        kill -STOP $(cat /run/qemu-ga.pid) 2>/dev/null
    else
        kill -CONT $(cat /run/qemu-ga.pid) 2>/dev/null
    fi
    dd if=/dev/zero of=/mnt/data/churn bs=4k count=4 conv=fsync status=none
    # The host's flood mark on vda: a hostile guest's agent answer (AGENT_FLOOD_MARK), made once.
    if [ ! -e /run/flooded ] && dd if=/dev/vda bs=4k count=1 skip=1793 iflag=direct status=none \
            | grep -q KTLAB-AGENT-FLOOD; then
        { printf 'ID='; head -c @ID_BYTES@ /dev/zero | tr '\0' x; printf '\nVERSION_ID="1.0"\n'; } >/etc/os-release
        i=0
        while [ $i -lt @MOUNTS@ ]; do
            mkdir -p /mnt/f/$i && mount -o bind /mnt/data /mnt/f/$i
            i=$((i+1))
        done
        echo "ktlab: flooded: $(grep -c ' /mnt/' /proc/self/mountinfo) mounts" >/dev/console
        touch /run/flooded
    fi
""".replace("@ID_BYTES@", str(AGENT_FLOOD_ID_BYTES)).replace("@MOUNTS@", str(AGENT_FLOOD_MOUNTS))


def agent_init_script() -> str:
    """The default /init with the agent set up before its loop and the stop mark checked in it."""
    script = INIT_SCRIPT.replace("\nn=0\nwhile :; do\n", AGENT_SETUP + "n=0\nwhile :; do\n" + AGENT_LOOP.lstrip("\n"))
    if script == INIT_SCRIPT:
        raise LabError("the agent variant cannot find the init script's loop")
    return script


class LabError(RuntimeError):
    """Anything that stops the lab from coming up."""


class Guest(NamedTuple):
    kver: str
    kernel: str
    initrd: str


# --------------------------------------------------------------------------
# helpers


def log(msg: str) -> None:
    print("lab: " + msg, file=sys.stderr, flush=True)


def _run(
    argv: Sequence[str],
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd, check=False)
    if check and p.returncode != 0:
        out = (p.stderr or p.stdout).strip()
        raise LabError(f"{' '.join(argv)} failed (rc={p.returncode}): {out}")
    return p


def virsh(*args: str, check: bool = True, readonly: bool = False) -> str:
    argv = ["virsh", "-q"]
    if readonly:
        argv.append("-r")
    argv += ["-c", URI] + list(args)
    return _run(argv, check=check, timeout=120).stdout


def _pids(comm: str, arg: str | None = None) -> list[int]:
    """Pids of this PID namespace whose /proc/PID/comm is comm (and whose argv holds arg, if given).

    A daemon of another namespace (a flavour tree's libvirtd, which /proc shows too) is not ours:
    counting it as the host's would leave the host's libvirtd unstarted after a restart.
    """
    own_namespace = os.readlink("/proc/self/ns/pid")
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != own_namespace:
                continue
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != comm:
                    continue
            if arg is not None:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if arg.encode() not in f.read().split(b"\0"):
                        continue
        except OSError:
            continue
        out.append(int(d))
    return out


def _pidfile_alive(path: str, comm: str) -> int | None:
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == comm:
                return pid
    except (OSError, ValueError, IndexError):
        pass
    return None


def _wait(pred, timeout: float, step: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def _ensure_dir(path: str, mode: int = 0o755) -> str:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return path


def _ensure_readable_path(path: str) -> None:
    """Make every directory from / down to path traversable by others (QEMU runs
    as libvirt-qemu). Only adds o+x where it is missing."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        p = os.sep.join(parts[:i])
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            log(f"chmod o+x {p} (QEMU runs as libvirt-qemu)")
            os.chmod(p, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# packages


def ensure_packages(extra: Sequence[str] = ()) -> list[str]:
    """Install whichever of PACKAGES (+extra) is missing. Returns what it installed."""
    wanted = list(PACKAGES) + list(extra)
    p = _run(["dpkg-query", "-W", "-f=${Package} ${Status}\n"] + wanted, check=False)
    ok = set()
    for line in p.stdout.splitlines():
        name, _, status = line.partition(" ")
        if status.strip() == "install ok installed":
            ok.add(name.split(":")[0])
    missing = [w for w in wanted if w not in ok]
    if not missing:
        return []
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, env=env)
    return missing


# --------------------------------------------------------------------------
# daemons


def _systemd_booted() -> bool:
    return os.path.isdir("/run/systemd/system")


def _virsh_ok() -> bool:
    try:
        return _run(["virsh", "-c", URI, "version"], check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _polkit_on_bus() -> bool:
    if not shutil.which("dbus-send"):
        return bool(_pids("polkitd"))
    p = _run(
        [
            "dbus-send",
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.PolicyKit1",
        ],
        check=False,
        timeout=10,
    )
    return "boolean true" in p.stdout


def _log_dir() -> str:
    return _ensure_dir(os.path.join(CACHE_DIR, "logs"))


def _start_libvirtd() -> None:
    log("starting libvirtd")
    _run(["libvirtd", "-d"])


def _fix_kvm_access() -> None:
    """Give /dev/kvm the owner and mode udev gives it on a Debian host
    (root:kvm 0660), where no udev did. Else libvirt finds KVM when it probes
    QEMU but not for the libvirt-qemu user afterwards, calls its capability
    cache outdated and re-probes QEMU (4-9 s) on every define, start and
    version call."""
    try:
        st = os.stat("/dev/kvm")
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (FileNotFoundError, KeyError):
        return
    if st.st_gid != kvm_gid or (st.st_mode & 0o060) != 0o060:
        log("chgrp kvm /dev/kvm; chmod g+rw (as udev would; QEMU runs as libvirt-qemu)")
        os.chown("/dev/kvm", -1, kvm_gid)
        os.chmod("/dev/kvm", stat.S_IMODE(st.st_mode) | 0o060)


def ensure_telegraf_user() -> None:
    try:
        pwd.getpwnam(TELEGRAF_USER)
    except KeyError:
        log(f"creating system user {TELEGRAF_USER}")
        _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TELEGRAF_USER])


def ensure_daemons() -> None:
    """Start dbus, polkitd, virtlogd, libvirtd where no init system does it.

    On a host booted with systemd, or where all of them run, nothing is touched.
    Then create the telegraf user and check it can read libvirt read-only.
    A flavour's tree (KVM_TELEGRAF_LAB_FLAVOUR) gets its own virtlogd and libvirtd instead, built first if need be.
    """
    if FLAVOUR != flavours.HOST:
        try:
            flavours.start(FLAVOUR)
        except flavours.FlavourError as e:
            raise LabError(str(e)) from None
        return
    if _systemd_booted():
        if not _virsh_ok():
            raise LabError(f"libvirtd does not answer on {URI}: start it with systemctl")
    else:
        _fix_kvm_access()
        dbus_started = False
        if not (_pidfile_alive("/run/dbus/pid", "dbus-daemon") or _pids("dbus-daemon", "--system")):
            _ensure_dir("/run/dbus")
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/run/dbus/pid")
            if not (os.path.exists("/etc/machine-id") or os.path.exists("/var/lib/dbus/machine-id")):
                _run(["dbus-uuidgen", "--ensure"])
            log("starting dbus-daemon --system")
            _run(["dbus-daemon", "--system", "--fork"])
            dbus_started = True
        if not _pids("polkitd"):
            log("starting polkitd")
            with open(os.path.join(_log_dir(), "polkitd.log"), "ab") as lf:
                subprocess.Popen(
                    [POLKITD, "--no-debug"],
                    stdin=subprocess.DEVNULL,
                    stdout=lf,
                    stderr=lf,
                    start_new_session=True,
                    close_fds=True,
                )
            if not _wait(_polkit_on_bus, 15):
                plog = os.path.join(_log_dir(), "polkitd.log")
                log(f"warning: polkitd did not register on the system bus (see {plog})")
        if not (_pidfile_alive("/run/virtlogd.pid", "virtlogd") or _pids("virtlogd")):
            log("starting virtlogd")
            _run(["virtlogd", "-d"])
        pid = _pidfile_alive("/run/libvirtd.pid", "libvirtd")
        running = pid or (_pids("libvirtd") or [None])[0]
        if running and dbus_started:
            log("restarting libvirtd (dbus was just started; polkit needs it)")
            os.kill(running, signal.SIGTERM)
            if not _wait(lambda: not os.path.exists(f"/proc/{running}"), 30, 0.2):
                raise LabError(f"libvirtd (pid {running}) did not stop")
            _start_libvirtd()
        elif not running:
            _start_libvirtd()
        if not _wait(_virsh_ok, 30):
            raise LabError(f"libvirtd does not answer: virsh -c {URI} version")
    ensure_telegraf_user()
    argv = ["runuser", "-u", TELEGRAF_USER, "--", "virsh", "-r", "-c", URI, "list", "--all"]
    res = {}

    def ro_ok() -> bool:
        res["p"] = _run(argv, check=False, timeout=20)
        return res["p"].returncode == 0

    if not _wait(ro_ok, 15, 1):
        raise LabError(
            f"user {TELEGRAF_USER} cannot read libvirt read-only ({' '.join(argv)}): {res['p'].stderr.strip()}"
        )


# --------------------------------------------------------------------------
# guest image


def _kernel_package() -> str | None:
    p = _run(["apt-cache", "depends", "linux-image-amd64"], check=False)
    m = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b", p.stdout)
    return m.group(1) if m else None


def _cached_kvers() -> list[str]:
    """Kernel versions in the cache, oldest fetched first."""
    d = os.path.join(CACHE_DIR, "guest")
    if not os.path.isdir(d):
        return []
    ks = [k for k in os.listdir(d) if os.path.exists(os.path.join(d, k, "vmlinuz"))]
    return sorted(ks, key=lambda k: os.path.getmtime(os.path.join(d, k, "vmlinuz")))


def _fetch_kernel(pkg: str, kver: str, dest: str) -> None:
    """apt-get download the kernel package and take vmlinuz and our modules out of
    it (the same data tree dpkg -x unpacks, streamed; nothing is installed)."""
    tmp = tempfile.mkdtemp(prefix="dl-", dir=CACHE_DIR)
    try:
        with contextlib.suppress(KeyError, OSError):  # let apt's sandbox user write here
            os.chown(tmp, pwd.getpwnam("_apt").pw_uid, -1)
        log(f"apt-get download {pkg}")
        _run(["apt-get", "-q", "download", pkg], cwd=tmp, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            raise LabError(f"apt-get download {pkg} gave {debs!r}")
        deb = os.path.join(tmp, debs[0])
        staging = _ensure_dir(os.path.join(tmp, "x"))
        mdir = _ensure_dir(os.path.join(staging, "modules"))
        found = {}
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                name = m.name.lstrip("./")
                base = os.path.basename(name)
                if name == f"boot/vmlinuz-{kver}":
                    with open(os.path.join(staging, "vmlinuz"), "wb") as f:
                        shutil.copyfileobj(tf.extractfile(m), f)
                    found["vmlinuz"] = name
                    continue
                if f"/modules/{kver}/kernel/" not in "/" + name:
                    continue
                mod, ext = base.split(".", 1)
                mod = mod.replace("-", "_")
                if mod in MODULES and ext in ("ko", "ko.xz"):
                    data = tf.extractfile(m).read()
                    if ext == "ko.xz":
                        data = lzma.decompress(data)
                    with open(os.path.join(mdir, mod + ".ko"), "wb") as f:
                        f.write(data)
                    found[mod] = name
        if proc.wait() != 0:
            raise LabError(f"dpkg-deb --fsys-tarfile {deb} failed")
        if "vmlinuz" not in found:
            raise LabError(f"no boot/vmlinuz-{kver} in {deb}")
        missing = [m for m in MODULES if m not in found]
        if missing:  # built into the kernel, or named otherwise: say so, go on
            log(f"note: modules not shipped as .ko (built in?): {' '.join(missing)}")
        for fn in os.listdir(mdir) + [".."]:
            os.chmod(os.path.join(mdir, fn), 0o755 if fn == ".." else 0o644)
        os.chmod(os.path.join(staging, "vmlinuz"), 0o644)
        _replace_dir(staging, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_pvh_note(elf: bytes) -> bool:
    """True if elf is an x86-64 ELF kernel with a Xen PVH entry note (type 18),
    which lets QEMU boot it uncompressed."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        ptype, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if ptype != 4:  # PT_NOTE
            continue
        pos, end = off, off + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _extract_vmlinux(vmlinuz: str, dest: str) -> bool:
    """Unpack the ELF kernel from a bzImage (xz or gzip payload). Under TCG,
    QEMU's PVH boot of the ELF saves the ~8 s the guest needs to decompress
    itself. Returns False (and the caller keeps vmlinuz) when not possible."""
    with open(vmlinuz, "rb") as f:
        data = f.read()
    for magic, make in (
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(31)),
    ):
        pos = data.find(magic)
        while pos >= 0:
            try:
                elf = make().decompress(data[pos:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if elf[:4] == b"\x7fELF":
                if not _has_pvh_note(elf):
                    return False
                with open(dest + ".tmp", "wb") as f:
                    f.write(elf)
                os.chmod(dest + ".tmp", 0o644)
                os.rename(dest + ".tmp", dest)
                return True
            pos = data.find(magic, pos + 1)
    return False


def _cpio_newc(entries) -> bytes:
    """entries: (name, mode, data, rdevmajor, rdevminor). Returns a newc archive."""
    out = io.BytesIO()
    ino = 1000

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    for name, mode, data, rmaj, rmin in list(entries) + [("TRAILER!!!", 0, b"", 0, 0)]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08X}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0))
        out.write(hdr.encode())
        out.write(nb)
        pad(110 + len(nb))
        out.write(data)
        pad(len(data))
        ino += 1
    return out.getvalue()


def _replace_dir(staging: str, dest: str) -> None:
    """Put a fully extracted folder in place of the cached one."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.rename(staging, dest)
    os.chmod(dest, 0o755)


def _write_initrd(initrd: str, entries: list, stamp: str, digest: str) -> None:
    """The gzipped cpio, put in place atomically, then the stamp of what it was built from."""
    tmp = initrd + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzip.compress(_cpio_newc(entries), 6))
    os.chmod(tmp, 0o644)
    os.rename(tmp, initrd)
    with open(stamp, "w") as f:
        f.write(digest + "\n")


def build_guest(force: bool = False, refresh: bool = False) -> Guest:
    """Kernel + initramfs in CACHE_DIR/guest/<kver>/, rebuilt only when missing
    or when the init script, module set or busybox changed.

    The kernel is the one linux-image-amd64 depends on. Once one is cached it
    is used without asking apt (1-2 s, or an apt-get update when the lists are
    gone), unless refresh=True (the CLI's build command) or force=True."""
    _ensure_dir(CACHE_DIR)
    _ensure_readable_path(CACHE_DIR)
    cached = _cached_kvers()
    pkg = None if cached and not (refresh or force) else _kernel_package()
    if pkg is None and not cached:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["apt-get", "update"], env=env, check=False)
        pkg = _kernel_package()
    if pkg is None:
        if not cached:
            raise LabError("cannot resolve linux-image-amd64's kernel package (apt-cache depends)")
        kver = cached[-1]
        if refresh or force:
            log(f"apt cannot resolve the kernel; using cached {kver}")
    else:
        kver = pkg[len("linux-image-") :]
    gdir = os.path.join(CACHE_DIR, "guest", kver)
    _ensure_dir(os.path.dirname(gdir))
    if force or not os.path.exists(os.path.join(gdir, "vmlinuz")):
        _fetch_kernel(pkg or "linux-image-" + kver, kver, gdir)
    mdir = os.path.join(gdir, "modules")
    mods = [m for m in MODULES if os.path.exists(os.path.join(mdir, m + ".ko"))]
    h = hashlib.sha256()
    h.update(INITRD_FORMAT.encode())
    h.update(INIT_SCRIPT.encode())
    h.update(" ".join(mods).encode())
    h.update(_sha256_file(BUSYBOX).encode())
    for m in mods:
        h.update(_sha256_file(os.path.join(mdir, m + ".ko")).encode())
    digest = h.hexdigest()
    initrd = os.path.join(gdir, "initrd.img")
    stamp = os.path.join(gdir, "initrd.sha256")
    try:
        with open(stamp) as f:
            current = f.read().strip() == digest and os.path.exists(initrd)
    except OSError:
        current = False
    if force or not current:
        log(f"building initramfs for {kver}")
        with open(BUSYBOX, "rb") as f:
            bb = f.read()
        entries = [(d, 0o040755, b"", 0, 0) for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")]
        entries.append(("dev/console", 0o020600, b"", 5, 1))
        entries.append(("bin/busybox", 0o100755, bb, 0, 0))
        entries.append(("init", 0o100755, INIT_SCRIPT.encode(), 0, 0))
        entries.append(("lib/modules/order", 0o100644, ("\n".join(mods) + "\n").encode(), 0, 0))
        for m in mods:
            with open(os.path.join(mdir, m + ".ko"), "rb") as f:
                entries.append((f"lib/modules/{m}.ko", 0o100644, f.read(), 0, 0))
        _write_initrd(initrd, entries, stamp, digest)
    kernel = os.path.join(gdir, "vmlinuz")
    vmlinux = os.path.join(gdir, "vmlinux")
    vstamp = vmlinux + ".format"
    try:
        with open(vstamp) as f:
            vstate = f.read().strip()
    except OSError:
        vstate = ""
    if force or vstate != VMLINUX_FORMAT:
        log("unpacking vmlinux for PVH boot")
        ok = _extract_vmlinux(kernel, vmlinux)
        if not ok:
            log("note: no PVH-bootable vmlinux in this kernel; booting vmlinuz")
            if os.path.exists(vmlinux):
                os.unlink(vmlinux)
        with open(vstamp, "w") as f:
            f.write(VMLINUX_FORMAT + "\n")
    if os.path.exists(vmlinux):
        kernel = vmlinux
    return Guest(kver, kernel, initrd)


def _download(tmp: str, package: str) -> str:
    """apt-get download one package into tmp (nothing is installed); the .deb's path."""
    with contextlib.suppress(KeyError, OSError):  # let apt's sandbox user write here
        os.chown(tmp, pwd.getpwnam("_apt").pw_uid, -1)
    log(f"apt-get download {package}")
    _run(["apt-get", "-q", "download", package], cwd=tmp, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    debs = [f for f in os.listdir(tmp) if f.startswith(package.split("=")[0] + "_") and f.endswith(".deb")]
    if len(debs) != 1:
        raise LabError(f"apt-get download {package} gave {debs!r}")
    return os.path.join(tmp, debs[0])


def _fetch_agent(kver: str, dest: str) -> None:
    """The agent's parts in dest: qemu-ga from Debian's qemu-guest-agent package and AGENT_MODULES from
    the guest's kernel package, both streamed out of the .deb (nothing is installed)."""
    tmp = tempfile.mkdtemp(prefix="dl-", dir=CACHE_DIR)
    try:
        staging = _ensure_dir(os.path.join(tmp, "x"))
        mdir = _ensure_dir(os.path.join(staging, "modules"))
        wanted = {"usr/sbin/qemu-ga": os.path.join(staging, "qemu-ga")}
        for deb in (_agent_package(tmp), _download(tmp, "linux-image-" + kver)):
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                for m in tf:
                    name = m.name.lstrip("./")
                    mod, _, ext = os.path.basename(name).partition(".")
                    target = wanted.get(name)
                    mod = mod.replace("-", "_")
                    in_kernel = f"/modules/{kver}/kernel/" in "/" + name and ext in ("ko", "ko.xz")
                    if target is None and in_kernel and mod in AGENT_MODULES:
                        target = os.path.join(mdir, mod + ".ko")
                    if target is None or not m.isfile():
                        continue
                    data = tf.extractfile(m).read()
                    with open(target, "wb") as f:
                        f.write(lzma.decompress(data) if ext == "ko.xz" else data)
            if proc.wait() != 0:
                raise LabError(f"dpkg-deb --fsys-tarfile {deb} failed")
        missing = [m for m in AGENT_MODULES if not os.path.exists(os.path.join(mdir, m + ".ko"))]
        if missing or not os.path.exists(wanted["usr/sbin/qemu-ga"]):
            raise LabError(f"the agent's parts are incomplete: modules {missing}, qemu-ga in {AGENT_PACKAGE}")
        os.chmod(os.path.join(staging, "qemu-ga"), 0o755)
        _replace_dir(staging, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _agent_package(tmp: str) -> str:
    """The qemu-guest-agent .deb of the daemon's Debian release: the host's, or apt-get download in the tree."""
    if FLAVOUR == flavours.HOST:
        return _download(tmp, AGENT_PACKAGE)
    inside = tempfile.mkdtemp(prefix="ktlab-agent-", dir=on_host("/tmp"))
    try:
        os.chmod(inside, 0o777)  # apt's sandbox user writes there
        log(f"apt-get download {AGENT_PACKAGE} in the {FLAVOUR} tree")
        _run(["chroot", ROOT, "sh", "-c", f"cd {inside[len(ROOT) :]} && apt-get -q download {AGENT_PACKAGE}"])
        (deb,) = [f for f in os.listdir(inside) if f.endswith(".deb")]
        shutil.move(os.path.join(inside, deb), os.path.join(tmp, deb))
        return os.path.join(tmp, deb)
    finally:
        shutil.rmtree(inside, ignore_errors=True)


def _shared_libraries(binary: str) -> list[str]:
    """The absolute paths ldd lists for binary, the dynamic loader included; in a flavour's tree, the tree's
    (read them through on_host())."""
    if FLAVOUR != flavours.HOST:
        inside = tempfile.mkdtemp(prefix="ktlab-ldd-", dir=on_host("/tmp"))
        try:
            shutil.copy(binary, inside)
            out = _run(["chroot", ROOT, "ldd", os.path.join(inside[len(ROOT) :], os.path.basename(binary))]).stdout
        finally:
            shutil.rmtree(inside, ignore_errors=True)
        return _ldd_paths(binary, out)
    return _ldd_paths(binary, _run(["ldd", binary]).stdout)


def _ldd_paths(binary: str, out: str) -> list[str]:
    paths = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            paths.append(m.group(1))
        elif "not found" in line:
            raise LabError(f"ldd {binary}: {line.strip()} (install the library on the host to extract it)")
    return paths


def build_agent_guest(guest: Guest) -> str:
    """The agent variant's initramfs beside the default one (its own stamp); returns its path.

    The default initramfs with qemu-ga, the libraries ldd lists, /etc/os-release and the
    virtio_console and ext2 modules added, and agent_init_script() as /init.
    """
    gdir = os.path.dirname(guest.initrd)
    adir = os.path.join(CACHE_DIR, "agent", *([] if FLAVOUR == flavours.HOST else [FLAVOUR]), guest.kver)
    if not os.path.exists(os.path.join(adir, "qemu-ga")):
        _ensure_dir(os.path.dirname(adir))
        _fetch_agent(guest.kver, adir)
    qemu_ga = os.path.join(adir, "qemu-ga")
    libraries = _shared_libraries(qemu_ga)
    mdir = os.path.join(gdir, "modules")
    mods = [m for m in MODULES if os.path.exists(os.path.join(mdir, m + ".ko"))]
    module_files = [os.path.join(mdir, m + ".ko") for m in mods]
    module_files += [os.path.join(adir, "modules", m + ".ko") for m in AGENT_MODULES]
    script = agent_init_script()
    h = hashlib.sha256()
    for part in (INITRD_FORMAT, script, AGENT_OS_RELEASE, " ".join(mods + list(AGENT_MODULES)), " ".join(libraries)):
        h.update(part.encode())
    for path in [BUSYBOX, qemu_ga, *map(on_host, libraries), *module_files]:
        h.update(_sha256_file(path).encode())
    digest = h.hexdigest()
    initrd = os.path.join(gdir, AGENT_INITRD)
    stamp = initrd + ".sha256"
    try:
        with open(stamp) as f:
            if f.read().strip() == digest and os.path.exists(initrd):
                return initrd
    except OSError:
        pass
    log(f"building the agent initramfs for {guest.kver}")
    dirs = {"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "etc", "usr", "usr/sbin", "run", "mnt"}
    dirs |= {os.path.dirname(path).lstrip("/") for path in libraries}
    for d in list(dirs):
        while "/" in d:
            d = os.path.dirname(d)
            dirs.add(d)
    entries = [(d, 0o040755, b"", 0, 0) for d in sorted(dirs)]
    entries.append(("dev/console", 0o020600, b"", 5, 1))
    with open(BUSYBOX, "rb") as f:
        entries.append(("bin/busybox", 0o100755, f.read(), 0, 0))
    entries.append(("init", 0o100755, script.encode(), 0, 0))
    entries.append(("etc/os-release", 0o100644, AGENT_OS_RELEASE.encode(), 0, 0))
    with open(qemu_ga, "rb") as f:
        entries.append(("usr/sbin/qemu-ga", 0o100755, f.read(), 0, 0))
    for path in libraries:
        with open(on_host(path), "rb") as f:  # the file the link names, at the path ldd printed
            entries.append((path.lstrip("/"), 0o100755, f.read(), 0, 0))
    order = mods + list(AGENT_MODULES)
    entries.append(("lib/modules/order", 0o100644, ("\n".join(order) + "\n").encode(), 0, 0))
    for name, path in zip(order, module_files):
        with open(path, "rb") as f:
            entries.append((f"lib/modules/{name}.ko", 0o100644, f.read(), 0, 0))
    _write_initrd(initrd, entries, stamp, digest)
    return initrd


# --------------------------------------------------------------------------
# domains


def _parallel(fn, items: Sequence[str], workers: int = 4) -> None:
    """fn(item) for each item, a few at a time; re-raises the first error."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        for fut in [ex.submit(fn, it) for it in items]:
            fut.result()


def _index(name: str) -> int:
    return int(name[len(LAB_PREFIX) :])


def _name(i: int) -> str:
    return f"{LAB_PREFIX}{i:02d}"


def guest_dir(name: str) -> str:
    """The guest's folder as its daemon names it (on_host() gives the host's path)."""
    return os.path.join(CACHE_DIR, "guests", name)


def on_host(path: str) -> str:
    """A path the daemon names, as the host sees it (inside a flavour's tree)."""
    return ROOT + path


def domain_xml(name: str, guest: Guest, kvm: bool = False) -> str:
    gd = guest_dir(name)
    idx = _index(name)
    disks = "".join(
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        f"      <source file={quoteattr(os.path.join(gd, d + '.img'))}/>\n"
        f"      <target dev='{d}' bus='virtio'/>\n"
        "    </disk>\n"
        for d in DISKS
    )
    nics = "".join(
        "    <interface type='ethernet'>\n"
        f"      <mac address='52:54:00:6b:{idx % 256:02x}:{k:02x}'/>\n"
        "      <model type='virtio'/>\n"
        "    </interface>\n"
        for k in range(NICS)
    )
    console = quoteattr(os.path.join(gd, "console.log"))
    dtype = "kvm" if kvm else "qemu"
    return f"""<domain type='{dtype}'>
  <name>{escape(name)}</name>
  <description>kvm-telegraf test lab guest</description>
  <memory unit='MiB'>{GUEST_MEM_MIB}</memory>
  <currentMemory unit='MiB'>{GUEST_MEM_MIB}</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(guest.kernel)}</kernel>
    <initrd>{escape(guest.initrd)}</initrd>
    <cmdline>{escape(CMDLINE)}</cmdline>
  </os>
  <features><acpi/><apic/><pae/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{disks}{nics}    <serial type='file'>
      <source path={console} append='off'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={console} append='off'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='usb' model='none'/>
    <memballoon model='virtio'>
      <stats period='2'/>
    </memballoon>
  </devices>
</domain>
"""


def groups_variant(xml: str) -> str:
    """The guest for ``--collect`` groups: both vCPUs online and pinned, two IOThreads with vda on the first."""
    xml = xml.replace(
        "<vcpu placement='static' current='1'>2</vcpu>",
        "<vcpu placement='static' cpuset='0-1'>2</vcpu>\n  <iothreads>2</iothreads>\n"
        "  <cputune>\n    <vcpupin vcpu='0' cpuset='0'/>\n    <vcpupin vcpu='1' cpuset='1'/>\n  </cputune>",
    )
    return xml.replace("<driver name='qemu' type='raw'/>", "<driver name='qemu' type='raw' iothread='1'/>", 1)


def chain_variant(xml: str) -> str:
    """The guest for ``--collect backing``: vdb is a qcow2 overlay whose backing file is the raw vdb.img.

    It creates the overlay (``qemu-img create -b``) next to the raw image, once: a variant runs after the
    disk images exist and before the domain is defined.
    """
    raw = re.search(r'<source file="([^"]*/vdb\.img)"/>', xml)
    if raw is None:
        raise LabError("chain variant: no vdb.img in the domain XML")
    base = raw.group(1)
    overlay = base[: -len(".img")] + ".qcow2"
    if not os.path.exists(overlay):
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay])
    xml = xml.replace(raw.group(0), f"<source file={quoteattr(overlay)}/>")
    return xml.replace(
        f"<driver name='qemu' type='raw'/>\n      <source file={quoteattr(overlay)}/>",
        f"<driver name='qemu' type='qcow2'/>\n      <source file={quoteattr(overlay)}/>",
    )


def agent_variant(xml: str) -> str:
    """The guest with a real agent: its own initramfs (build_agent_guest), the org.qemu.guest_agent.0
    channel, and a third disk (vdc) that the guest formats ext2 and mounts on /mnt/data."""
    initrd = re.search(r"<initrd>(.*?)</initrd>", xml)
    if initrd is None:
        raise LabError("the agent variant needs a guest booted from an initramfs")
    agent_initrd = os.path.join(os.path.dirname(initrd.group(1)), AGENT_INITRD)
    xml = xml.replace(initrd.group(0), f"<initrd>{agent_initrd}</initrd>")
    vda = re.search(r"<source file=[\"']([^\"']*)/vda\.img[\"']/>", xml)
    if vda is None:
        raise LabError("the agent variant cannot find vda's image")
    disk = (
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        f"      <source file={quoteattr(os.path.join(vda.group(1), AGENT_DISK + '.img'))}/>\n"
        f"      <target dev='{AGENT_DISK}' bus='virtio'/>\n"
        "    </disk>\n"
        "    <channel type='unix'>\n"
        "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
        "    </channel>\n"
    )
    return xml.replace("    <serial type='file'>", disk + "    <serial type='file'>", 1)


def _stable_name(name: str, length: int) -> str:
    """A short host-wide name (a tap, a bridge) derived from a guest's: the same on every run, unique per guest."""
    return "kt" + hashlib.sha1(name.encode()).hexdigest()[: length - 2]


def network_name() -> str:
    return f"{LAB_PREFIX}net"


def network_bridge() -> str:
    """The bridge of this prefix's libvirt network."""
    return _stable_name(network_name(), 12)


def network_up() -> str:
    """This prefix's started libvirt network: a bridge with no address, so no dnsmasq (and MTU 1400)."""
    name = network_name()
    if name not in virsh("net-list", "--all", "--name"):
        bridge = network_bridge()
        xml = f"<network><name>{escape(name)}</name><bridge name='{bridge}' stp='off'/><mtu size='1400'/></network>"
        with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
            f.write(xml)
        try:
            virsh("net-define", f.name)
        finally:
            os.unlink(f.name)
    if name not in virsh("net-list", "--name"):
        virsh("net-start", name)
    return name


def network_down() -> None:
    name = network_name()
    if name in virsh("net-list", "--all", "--name"):
        virsh("net-destroy", name, check=False)
        virsh("net-undefine", name, check=False)


def identity_variant(xml: str) -> str:
    """The guest for ``--collect device_info``: vda with a serial, an empty IDE CD-ROM (hdc), the first NIC on
    this prefix's libvirt network (MTU 1400), the second a ``bridge`` NIC on that network's bridge with a target
    dev of its own. (No interfaceid: libvirt 9.0 takes a <virtualport> only with Open vSwitch, which the lab
    has not.) Its CD-ROM never reads or writes: start it with --no-wait."""
    name = re.search(r"<name>(.*?)</name>", xml)
    if name is None:
        raise LabError("identity variant: no <name> in the domain XML")
    network = network_up()
    vda = "<target dev='vda' bus='virtio'/>\n"
    xml = xml.replace(vda, vda + "      <serial>KTLAB-VDA-0001</serial>\n")
    cdrom = (
        "    <disk type='file' device='cdrom'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        "      <target dev='hdc' bus='ide'/>\n"
        "      <readonly/>\n"
        "    </disk>\n"
    )
    xml = xml.replace("    <interface type='ethernet'>", cdrom + "    <interface type='ethernet'>", 1)
    nics = list(
        re.finditer(r"    <interface type='ethernet'>\n(      <mac [^\n]*\n)      <model type='virtio'/>\n", xml)
    )
    if len(nics) != 2:
        raise LabError("identity variant: the guest should have two NICs")
    on_network = (
        "    <interface type='network'>\n"
        f"{nics[0].group(1)}"
        f"      <source network='{network}'/>\n"
        "      <model type='virtio'/>\n"
        "      <mtu size='1400'/>\n"
    )
    on_bridge = (
        "    <interface type='bridge'>\n"
        f"{nics[1].group(1)}"
        f"      <source bridge='{network_bridge()}'/>\n"
        f"      <target dev='{_stable_name(name.group(1), 12)}'/>\n"
        "      <model type='virtio'/>\n"
    )
    return xml.replace(nics[1].group(0), on_bridge, 1).replace(nics[0].group(0), on_network, 1)


FULL_DISK_KIB = 1024  # the tmpfs under vdb's image: the guest's loop writes past it within ~20 s


def full_variant(xml: str) -> str:
    """The guest whose vdb runs out of space: its 8 MiB sparse image sits on a 1 MiB tmpfs of its own, and
    ``error_policy='stop'`` pauses the guest at the first write that finds no space (QEMU's ENOSPC). The
    guest pauses itself within ~20 s of booting: start it with --no-wait. ``down`` unmounts the tmpfs."""
    raw = re.search(r'<source file="([^"]*)/vdb\.img"/>', xml)
    if raw is None:
        raise LabError("full variant: no vdb.img in the domain XML")
    small = os.path.join(raw.group(1), "small")
    mount = on_host(small)
    _ensure_dir(mount)
    if not os.path.ismount(mount):
        _run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_KIB}k,mode=0755", "tmpfs", mount])
    image = os.path.join(mount, "vdb.img")
    if not os.path.exists(image):
        with open(image, "wb") as f:
            f.truncate(DISK_MIB << 20)
    xml = xml.replace(raw.group(0), f"<source file={quoteattr(os.path.join(small, 'vdb.img'))}/>")
    raw_driver = "<driver name='qemu' type='raw'/>"
    driver = xml.rindex(raw_driver, 0, xml.index(os.path.join(small, "vdb.img")))  # vdb's, just before its source
    return xml[:driver] + xml[driver:].replace(raw_driver, "<driver name='qemu' type='raw' error_policy='stop'/>", 1)


def _unmount_below(path: str) -> None:
    """Unmount what a variant mounted below a guest's folder (the full variant's tmpfs)."""
    with open("/proc/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(path + os.sep)), reverse=True):
        _run(["umount", point], check=False)


# The host devices the hostdevs variant names: a PCI device of this machine (so libvirt's node device gives its
# vendor and product), a mediated device, a USB device by its ids, and an SR-IOV-style NIC. Never started.
MDEV_UUID = "c2177883-f1bb-47f0-914d-32a22e3a8804"


def _host_pci_addresses() -> list[str]:
    try:
        return sorted(os.listdir("/sys/bus/pci/devices"))
    except OSError:
        return []


def hostdevs_variant(xml: str) -> str:
    """A guest holding host devices, for ``--collect hostdevs``: define it only (up --no-start), it cannot run."""
    pci = _host_pci_addresses()
    if len(pci) < 2:
        raise LabError("hostdevs variant: this machine has fewer than two PCI devices")

    def address(text: str) -> str:
        domain, bus, rest = text.split(":")
        slot, function = rest.split(".")
        return f"<address type='pci' domain='0x{domain}' bus='0x{bus}' slot='0x{slot}' function='0x{function}'/>"

    devices = (
        "    <hostdev mode='subsystem' type='pci' managed='no'>\n"
        f"      <source>{address(pci[-1])}</source>\n"
        "    </hostdev>\n"
        "    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>\n"
        f"      <source><address uuid='{MDEV_UUID}'/></source>\n"
        "    </hostdev>\n"
        "    <hostdev mode='subsystem' type='usb' managed='yes'>\n"
        "      <source><vendor id='0x046d'/><product id='0xc52b'/></source>\n"
        "    </hostdev>\n"
        "    <interface type='hostdev' managed='no'>\n"
        "      <mac address='52:54:00:6b:ff:01'/>\n"
        f"      <source>{address(pci[-2])}</source>\n"
        "    </interface>\n"
    )
    xml = xml.replace("    <controller type='usb' model='none'/>\n", "")  # a USB host device needs a controller
    return xml.replace("    <serial type='file'>", devices + "    <serial type='file'>", 1)


def dirtyring_variant(xml: str) -> str:
    """A ``type='kvm'`` guest (up --kvm) with KVM's dirty ring on, so a dirty-rate calculation in dirty-ring
    mode reports each vCPU's rate."""
    return xml.replace("<pae/></features>", "<pae/><kvm><dirty-ring state='on' size='4096'/></kvm></features>")


# The "stats" variant's disk statistics (libvirt 11.9 / 12.1 with QEMU 10.2 and later): QEMU's own latency
# figures over two intervals, and a latency histogram for every kind of request, bins from 0 to 100 ms (ns).
STATS_INTERVALS_S = (1, 10)
STATS_HISTOGRAM_BINS_NS = (0, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 5_000_000, 100_000_000)
STATS_XML = (
    "<statistics>"
    + "".join(f"<statistic interval='{s}'/>" for s in STATS_INTERVALS_S)
    + "<latency-histogram>"
    + "".join(f"<bin start='{b}'/>" for b in STATS_HISTOGRAM_BINS_NS)
    + "</latency-histogram></statistics>"
)


def stats_variant(xml: str) -> str:
    """The guest for ``--collect disk_latency`` and ``latency_histogram``: both disks with timed statistics
    and latency histograms. libvirt before 11.9 (the host's 9.0, trixie's 11.3) drops the element silently."""
    return xml.replace("<driver name='qemu' type='raw'/>", f"<driver name='qemu' type='raw'>{STATS_XML}</driver>")


FLOOD_MEM_MIB = 256


def flood_variant(xml: str) -> str:
    """The agent variant with room for a hostile agent's answer (``agent-flood``): qemu-ga reads the 4 MB
    os-release and writes it as JSON, more than a 96 MiB guest has free."""
    memory = re.compile(r"<(memory|currentMemory) unit='MiB'>\d+</")
    flooded = memory.sub(lambda m: f"<{m.group(1)} unit='MiB'>{FLOOD_MEM_MIB}</", agent_variant(xml))
    if len(memory.findall(xml)) != 2:
        raise LabError("the flood variant cannot find the guest's memory")
    return flooded


VARIANTS = {
    "groups": groups_variant,
    "chain": chain_variant,
    "agent": agent_variant,
    "flood": flood_variant,
    "stats": stats_variant,
    "identity": identity_variant,
    "full": full_variant,
    "hostdevs": hostdevs_variant,
    "dirtyring": dirtyring_variant,
}
# Disks a variant adds to DISKS (MiB each), and what it builds before its guests start.
VARIANT_DISKS = {"agent": ((AGENT_DISK, AGENT_DISK_MIB),), "flood": ((AGENT_DISK, AGENT_DISK_MIB),)}
VARIANT_BUILDS = {"agent": build_agent_guest, "flood": build_agent_guest}


def agent_stop(name: str, stop: bool = True) -> None:
    """Have the guest's loop stop (SIGSTOP) its qemu-ga within about a second, or resume it (stop=False)."""
    with open(on_host(os.path.join(guest_dir(name), "vda.img")), "r+b") as f:
        f.seek(AGENT_MARK_OFFSET)
        f.write(AGENT_STOP_MARK if stop else b"\0" * len(AGENT_STOP_MARK))
        f.flush()
        os.fsync(f.fileno())


def agent_flood(name: str) -> None:
    """Have the guest's loop make its agent's answer as big as a guest can (AGENT_FLOOD_MARK), within seconds."""
    with open(on_host(os.path.join(guest_dir(name), "vda.img")), "r+b") as f:
        f.seek(AGENT_FLOOD_OFFSET)
        f.write(AGENT_FLOOD_MARK)
        f.flush()
        os.fsync(f.fileno())


def pool_name() -> str:
    return f"{LAB_PREFIX}pool"


def pool_up() -> str:
    """A started ``dir`` storage pool of this prefix, with one 1 MiB volume; returns its name."""
    ensure_daemons()
    name, path = pool_name(), os.path.join(CACHE_DIR, "pools", pool_name())
    _ensure_dir(on_host(path))
    if name not in virsh("pool-list", "--all", "--name"):
        virsh("pool-define-as", name, "dir", "--target", path)
    if name not in virsh("pool-list", "--name"):
        virsh("pool-start", name)
    if "vol1" not in virsh("vol-list", name):
        virsh("vol-create-as", name, "vol1", "1M", "--format", "raw")
    virsh("pool-refresh", name)
    return name


def pool_down() -> None:
    name = pool_name()
    if name in virsh("pool-list", "--all", "--name"):
        virsh("pool-destroy", name, check=False)
        virsh("pool-undefine", name, check=False)
    shutil.rmtree(on_host(os.path.join(CACHE_DIR, "pools", name)), ignore_errors=True)


def dump_slowly(name: str, mib_per_s: float = 10.0, live: bool = True) -> subprocess.Popen:
    """Start ``virsh dump --live`` into a FIFO read at *mib_per_s*, so the job runs for seconds, not 0.6 s.

    live=False: a plain ``virsh dump``, which pauses the guest until the dump is done.

    libvirt runs a dump at full migration bandwidth (migrate-setspeed does not apply to it); a slow reader
    is what slows it down. The returned virsh process ends when the dump is done; wait() for it.
    """
    fifo_seen = os.path.join(CACHE_DIR, "dumps", name + ".fifo")  # as the daemon names it
    fifo = on_host(fifo_seen)
    _ensure_dir(os.path.dirname(fifo))
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)  # QEMU (libvirt-qemu) writes to it
    made = os.stat(fifo).st_ino

    def drain() -> None:
        with open(fifo, "rb") as f:
            while f.read(1 << 20):
                time.sleep(1.0 / mib_per_s)
        with contextlib.suppress(FileNotFoundError):  # the next dump may have made its own already
            if os.stat(fifo).st_ino == made:
                os.unlink(fifo)

    threading.Thread(target=drain, daemon=True).start()
    live_flag = ["--live"] if live else []
    return subprocess.Popen(["virsh", "-c", URI, "dump", *live_flag, name, fifo_seen], stdout=subprocess.DEVNULL)


def names() -> list[str]:
    """All lab domains (any state), sorted."""
    out = virsh("list", "--all", "--name")
    return sorted(n.strip() for n in out.splitlines() if n.strip().startswith(LAB_PREFIX))


def domstats(doms: Sequence[str], *groups: str) -> dict[str, dict[str, str]]:
    """virsh domstats for the given domains: {name: {key: value-as-string}}."""
    if not doms:
        return {}
    out = virsh("domstats", *(["--" + g for g in groups] + list(doms)), check=False)
    res: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for line in out.splitlines():
        m = re.match(r"Domain: '(.*)'", line)
        if m:
            cur = res.setdefault(m.group(1), {})
        elif cur is not None and "=" in line:
            k, _, v = line.strip().partition("=")
            cur[k] = v
    return res


def _domstate(stats: dict[str, str]) -> str:
    names_ = {
        "0": "nostate",
        "1": "running",
        "2": "blocked",
        "3": "paused",
        "4": "shutdown",
        "5": "shutoff",
        "6": "crashed",
        "7": "pmsuspended",
    }
    return names_.get(stats.get("state.state", ""), "unknown")


def console_tail(name: str, lines: int = 12) -> str:
    """The guest's own ktlab:/panic lines, then the last lines of its console."""
    try:
        with open(on_host(os.path.join(guest_dir(name), "console.log")), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (1 << 20)))
            text = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"(no console log: {e})"
    if not text:
        return "(console log is empty)"
    key = [ln for ln in text if "ktlab:" in ln or "Kernel panic" in ln][-8:]
    tail = text[-lines:]
    out = [ln for ln in key if ln not in tail]
    return "\n".join(out + (["..."] if out else []) + tail)


def _pending(stats: dict[str, str]) -> list[str]:
    """What a domain still lacks before it counts as up."""
    why = []
    if "balloon.usable" not in stats or "balloon.available" not in stats:
        why.append("balloon stats")
    nets = int(stats.get("net.count", "0"))
    if nets < NICS or any(int(stats.get(f"net.{i}.tx.pkts", "0")) == 0 for i in range(nets)):
        why.append("net tx")
    blks = int(stats.get("block.count", "0"))
    if blks < len(DISKS) or any(
        int(stats.get(f"block.{i}.{rw}.reqs", "0")) == 0 for i in range(blks) for rw in ("rd", "wr")
    ):
        why.append("block rd/wr")
    return why


def _wait_ready(doms: Sequence[str], started: dict[str, float], timeout: float) -> None:
    pending = set(doms)
    last: dict[str, dict[str, str]] = {}
    end = time.monotonic() + timeout
    while pending:
        stats = domstats(sorted(pending), "state", "balloon", "interface", "block")
        for d in sorted(pending):
            st = stats.get(d, {})
            last[d] = st
            state = _domstate(st)
            if state not in ("running", "unknown"):
                raise LabError(f"{d} is {state} while booting; console tail:\n{console_tail(d)}")
            if st and not _pending(st):
                log(f"{d} ready after {time.monotonic() - started[d]:.1f} s")
                pending.discard(d)
        if not pending:
            break
        if time.monotonic() >= end:
            msg = ["timed out after {:.0f} s waiting for {}".format(timeout, " ".join(sorted(pending)))]
            for d in sorted(pending):
                lacks = ", ".join(_pending(last.get(d, {}))) or "stats"
                msg.append(f"{d} lacks {lacks}; console tail:\n{console_tail(d)}")
            raise LabError("\n".join(msg))
        time.sleep(1)


def up(
    n: int,
    kvm: bool = False,
    timeout: float | None = None,
    variant: str | None = None,
    wait: bool = True,
    define_only: bool = False,
) -> list[str]:
    """Define and start ktlab-01..ktlab-NN (those not running yet) and wait until
    all of them report balloon stats, net tx and block rd/wr. Returns the names.

    timeout defaults to DEFAULT_TIMEOUT, plus 5 s per booting guest beyond 4
    (20 TCG guests need ~90 s to boot on 2 cores). variant names a VARIANTS
    function that rewrites the XML; wait=False returns once they are started
    (a nested-KVM guest never gets to its stats loop in time); define_only defines
    them and starts none (a guest holding host devices it cannot have)."""
    if n < 1:
        raise LabError("up needs N >= 1")
    ensure_packages()
    ensure_daemons()
    guest = build_guest()
    if variant in VARIANT_BUILDS:
        VARIANT_BUILDS[variant](guest)
    if kvm and not os.path.exists("/dev/kvm"):
        raise LabError("--kvm: /dev/kvm does not exist")
    want = [_name(i) for i in range(1, n + 1)]
    existing = set(names())
    states = {d: _domstate(s) for d, s in domstats(sorted(existing & set(want)), "state").items()}
    started: dict[str, float] = {}
    boot = []
    for d in want:
        if states.get(d) == "paused":
            virsh("resume", d)
        if states.get(d) in ("running", "paused"):
            started[d] = time.monotonic()
        else:
            boot.append(d)

    def start(d: str) -> None:
        gd = _ensure_dir(on_host(guest_dir(d)))
        for disk, mib in [(d, DISK_MIB) for d in DISKS] + list(VARIANT_DISKS.get(variant or "", ())):
            path = os.path.join(gd, disk + ".img")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.truncate(mib << 20)
        if d in existing:  # defined but shut off (a guest that crashed): redefine it, its UUID is new
            virsh("undefine", d, check=False)
        with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
            xml = domain_xml(d, guest, kvm)
            f.write(VARIANTS[variant](xml) if variant else xml)
        try:
            virsh("define", f.name)
        finally:
            os.unlink(f.name)
        virsh("autostart", "--disable", d)
        started[d] = time.monotonic()
        if not define_only:
            virsh("start", d)

    if boot:
        log("starting {} ({})".format(" ".join(boot), "kvm" if kvm else "tcg"))
        _parallel(start, boot)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT + 5.0 * max(0, len(boot) - 4)
    if not wait or define_only:
        return want
    _wait_ready(want, started, timeout)
    log(f"{len(want)} guest(s) up, {time.monotonic() - min(started.values()):.1f} s after the first start")
    others = sorted(existing - set(want))
    if others:
        log("note: other lab domains left as they were: {}".format(" ".join(others)))
    return want


def down() -> None:
    """Destroy and undefine every ktlab-* domain and remove its files."""
    doms = names()
    states = {d: _domstate(s) for d, s in domstats(doms, "state").items()}

    def remove(d: str) -> None:
        if states.get(d) not in ("shutoff", None):
            virsh("destroy", d, check=False)  # QEMU takes ~2 s to exit
        virsh("undefine", d, check=False)

    _parallel(remove, doms)
    network_down()
    root = on_host(os.path.join(CACHE_DIR, "guests"))
    if os.path.isdir(root):
        left = set(names())
        for d in os.listdir(root):
            if d.startswith(LAB_PREFIX) and d not in left:
                _unmount_below(os.path.join(root, d))
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    log(f"down: removed {len(doms)} domain(s)")


def _each(action: str, skip_state: str) -> list[str]:
    doms = names()
    states = {d: _domstate(s) for d, s in domstats(doms, "state").items()}
    done = []
    for d in doms:
        if states.get(d) in (skip_state, "shutoff"):
            continue
        virsh(action, d)
        done.append(d)
    log("{}: {}".format(action, " ".join(done) or "nothing to do"))
    return done


def pause() -> list[str]:
    """virsh suspend every running lab domain."""
    return _each("suspend", "paused")


def resume() -> list[str]:
    """virsh resume every paused lab domain."""
    return _each("resume", "running")


def status() -> list[str]:
    doms = names()
    stats = domstats(doms, "state", "balloon")
    lines = []
    for d in doms:
        st = stats.get(d, {})
        line = f"{d} {_domstate(st)}"
        if "balloon.rss" in st:
            line += f" rss={int(st['balloon.rss']) // 1024}MiB"
        if "balloon.usable" in st:
            line += f" usable={int(st['balloon.usable']) // 1024}MiB"
        lines.append(line)
    return lines


# --------------------------------------------------------------------------
# CLI


def flavour_command(args: argparse.Namespace) -> int:
    """``lab.py flavour ACTION NAME [N]``: guest actions run this file again under the flavour's daemon."""
    names = list(flavours.ALL) if args.name == "all" else [args.name]
    try:
        for name in names:
            flavours.flavour(name)
            if args.action == "status":
                print(flavours.status(name))
            elif args.action == "uri":
                print(flavours.uri(name))
            elif name == flavours.HOST and args.action in ("build", "start", "stop"):
                continue  # the host's libvirtd is lab.py's own business (daemons)
            elif args.action == "build":
                stamp = flavours.build(name, force=args.rebuild)
                print(json.dumps(stamp, sort_keys=True))
            elif args.action == "start":
                flavours.start(name)
            elif args.action == "stop":
                flavours.stop(name)
            else:
                if len(names) > 1:
                    raise LabError(f"flavour {args.action} takes one flavour, not all")
                if args.action == "up" and not args.n:
                    raise LabError("flavour up NAME N: how many guests?")
                rest = [args.action] + ([str(args.n)] if args.action == "up" else [])
                rest += ["--variant", args.variant] if args.variant and args.action == "up" else []
                env = {k: v for k, v in os.environ.items() if k != "KVM_TELEGRAF_LAB_PREFIX"}
                env["KVM_TELEGRAF_LAB_FLAVOUR"] = name
                return subprocess.run([sys.executable, os.path.abspath(__file__), *rest], env=env).returncode
    except flavours.FlavourError as e:
        raise LabError(str(e)) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start N guests and wait for their stats")
    p_up.add_argument("n", type=int)
    p_up.add_argument("--kvm", action="store_true", help="<domain type='kvm'> instead of TCG")
    p_up.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        help="rewrite the guest's XML (groups: iothreads, pinning; chain: vdb on a qcow2 overlay; "
        "agent: qemu-ga and an ext2 vdc; flood: agent with 256 MiB, for agent-flood; identity: a serial, a CD-ROM, "
        "a NIC on a network; full: vdb fills "
        "and pauses the guest; hostdevs: host devices, with --define-only; dirtyring: KVM's dirty ring, with --kvm)",
    )
    p_up.add_argument("--no-wait", action="store_true", help="return once started, without waiting for stats")
    p_up.add_argument("--define-only", action="store_true", help="define the guests, start none (hostdevs)")
    p_up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds to wait (default {DEFAULT_TIMEOUT:.0f}, +5 per guest beyond 4)",
    )
    for c, h in (
        ("down", "destroy and undefine all lab guests"),
        ("pause", "suspend all lab guests"),
        ("resume", "resume all lab guests"),
        ("status", "one line per lab guest"),
        ("daemons", "only ensure the daemons"),
        ("build", "only build the guest kernel and initramfs"),
        ("pool-up", "define and start this prefix's dir storage pool"),
        ("pool-down", "remove this prefix's storage pool"),
    ):
        sub.add_parser(c, help=h)
    p_fl = sub.add_parser("flavour", help="another libvirt in a Debian tree beside the host's (flavours.py)")
    p_fl.add_argument(
        "action",
        choices=("build", "start", "stop", "up", "down", "pause", "resume", "status", "uri"),
        help="build: the tree only; start/stop: its daemons; up N/down/pause/resume/status: its guests",
    )
    p_fl.add_argument("name", help="bullseye, trixie, sid, or host; all: each of them (build, stop, status)")
    p_fl.add_argument("n", nargs="?", type=int, help="up: how many guests")
    p_fl.add_argument("--variant", choices=sorted(VARIANTS))
    p_fl.add_argument("--rebuild", action="store_true", help="build: build the tree again even if one is cached")
    for c, h in (
        ("agent-stop", "stop (SIGSTOP) the qemu-ga of an agent-variant guest, from inside it"),
        ("agent-resume", "resume (SIGCONT) it"),
        ("agent-flood", "have a flood-variant guest give a 4 MB os-release ID and 2,000 mounts, from inside it"),
    ):
        sub.add_parser(c, help=h).add_argument("name")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "flavour":
            return flavour_command(args)
        if args.cmd == "up":
            for d in up(
                args.n,
                kvm=args.kvm,
                timeout=args.timeout,
                variant=args.variant,
                wait=not args.no_wait,
                define_only=args.define_only,
            ):
                print(d)
        elif args.cmd == "down":
            down()
        elif args.cmd == "pool-up":
            print(pool_up())
        elif args.cmd == "pool-down":
            pool_down()
        elif args.cmd in ("agent-stop", "agent-resume"):
            agent_stop(args.name, stop=args.cmd == "agent-stop")
        elif args.cmd == "agent-flood":
            agent_flood(args.name)
        elif args.cmd == "pause":
            pause()
        elif args.cmd == "resume":
            resume()
        elif args.cmd == "status":
            for line in status():
                print(line)
        elif args.cmd == "daemons":
            ensure_packages()
            ensure_daemons()
        elif args.cmd == "build":
            ensure_packages()
            g = build_guest(refresh=True)
            print("{} {} {}".format(*g))
    except LabError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
