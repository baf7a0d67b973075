#!/usr/bin/env python3
"""Older and newer libvirt beside the host's: Debian trees, each with its own libvirtd (issue #22).

A flavour is one Debian release's libvirt, QEMU and Python:

    bullseye  libvirt 7.0   QEMU 5.2   Python 3.9
    host      libvirt 9.0   QEMU 7.2   Python 3.11   (this machine's own libvirtd, as tests/lab runs it)
    trixie    libvirt 11.3  QEMU 10.0  Python 3.13
    sid       libvirt 12.8  QEMU 11.1  Python 3.14

Each tree is built once (``debootstrap --variant=minbase``, then the packages with apt inside it, and a
venv with the test tools) into $KVM_TELEGRAF_LAB_CACHE/trees/NAME/root. Its virtlogd and libvirtd run
chrooted in mount, pid, net and uts namespaces of their own, with a hostname of their own; the sockets
stay inside the tree, reached from the host with ``qemu+unix:///system?socket=ROOT/run/libvirt/libvirt-sock``.
The host's libvirtd, its guests, its network and its cgroups are never touched: the tree's daemon runs in a
cgroup namespace whose root is a folder of its own (``kvm-telegraf-lab-NAME-HASH``) under the caller's cgroup in
each hierarchy, so its ``machine`` partition is not the host libvirtd's, and its guests' taps live in the
tree's network namespace.

Stdlib only (it runs on the host's /usr/bin/python3, before any venv exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence

CACHE_DIR = os.environ.get("KVM_TELEGRAF_LAB_CACHE", "/var/cache/kvm-telegraf-lab")
HOST = "host"

# What a tree installs with apt: the daemon, its QEMU driver, virsh, and the client side the package needs.
TREE_PACKAGES = (
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "python3-libvirt",
    "python3-click",
    "python3-venv",
)
# What a tree's Python lacks that the .deb needs there: Debian 11's Python 3.9 has no tomllib, and Debian 11 no
# python3-tomli; the .deb reads --config with its python3-toml.
TREE_EXTRA_PACKAGES = {"bullseye": ("python3-toml",)}
# The test tools in the tree's venv (--system-site-packages: the unit suite runs on the tree's own
# python3-libvirt and python3-click, 7.1.2 on Debian 11). toml for the suite's tests of that reader: pip keeps
# a tree's own python3-toml.
TREE_PIP = ("pytest>=7", "pytest-golden>=0.2.2", "hypothesis>=6", "setuptools>=61", "wheel", "toml")
VENV = "/opt/kvm-telegraf-lab/venv"
SOURCE = "/opt/kvm-telegraf-lab/src"  # where the checkout is copied for a run inside the tree
# Bump when the way a tree is built or configured changes: every tree is then built again.
TREE_FORMAT = "3"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class Flavour(NamedTuple):
    name: str  # the Debian suite it is built from
    libvirt: str  # major.minor the tree must hold
    qemu: str
    python: str
    prefix: str  # its lab guests' name prefix: its guests never share a name with another daemon's
    hostname: str  # the UTS hostname its libvirtd reports

    @property
    def label(self) -> str:
        return f"{self.name} (libvirt {self.libvirt}, QEMU {self.qemu}, Python {self.python})"


FLAVOURS: Dict[str, Flavour] = {
    f.name: f
    for f in (
        Flavour("bullseye", "7.0", "5.2", "3.9", "ktbul-", "kt-bullseye"),
        Flavour("trixie", "11.3", "10.0", "3.13", "kttri-", "kt-trixie"),
        Flavour("sid", "12.8", "11.1", "3.14", "ktsid-", "kt-sid"),
    )
}
HOST_FLAVOUR = Flavour(HOST, "9.0", "7.2", "3.11", "ktlab-", "")
ALL = (HOST, "bullseye", "trixie", "sid")

QEMU_CONF = """
# kvm-telegraf lab tree: no dbus, polkit, AppArmor or SELinux, QEMU as root, no namespaces of its own.
security_driver = "none"
namespaces = [ ]
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
"""
LIBVIRTD_CONF = """
# kvm-telegraf lab tree: no polkit; the read-only socket is open to every user (mode 0777), as on a host.
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_ro_perms = "0777"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


class FlavourError(RuntimeError):
    """A flavour that cannot be built or started; the message says why."""


def log(msg: str) -> None:
    print("lab: " + msg, file=sys.stderr, flush=True)


def selected(env: Optional[str] = None) -> List[str]:
    """The flavours to run: $KVM_TELEGRAF_FLAVOURS (``host``, ``sid,trixie``, ``all``), all four by default."""
    text = os.environ.get("KVM_TELEGRAF_FLAVOURS", "") if env is None else env
    names = [n.strip() for n in text.replace(",", " ").split() if n.strip()]
    if not names or names == ["all"]:
        return list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise FlavourError(f"KVM_TELEGRAF_FLAVOURS: unknown flavour(s) {' '.join(unknown)}; known: {' '.join(ALL)}")
    return [n for n in ALL if n in names]


def flavour(name: str) -> Flavour:
    if name == HOST:
        return HOST_FLAVOUR
    try:
        return FLAVOURS[name]
    except KeyError:
        raise FlavourError(f"unknown flavour {name!r}; known: {' '.join(ALL)}") from None


def tree_dir(name: str) -> str:
    return os.path.join(CACHE_DIR, "trees", name)


def root(name: str) -> str:
    """The tree's root directory on the host ('' for the host itself)."""
    return "" if name == HOST else os.path.join(tree_dir(name), "root")


def socket_path(name: str, read_only: bool = False) -> str:
    base = "/run/libvirt/libvirt-sock" + ("-ro" if read_only else "")
    return root(name) + base


def uri(name: str, read_only: bool = False) -> str:
    """How a client on the host reaches the flavour's libvirtd."""
    if name == HOST:
        return "qemu:///system"
    return f"qemu+unix:///system?socket={socket_path(name, read_only)}"


def _run(argv: Sequence[str], timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if p.returncode:
        out = (p.stderr.strip() or p.stdout.strip())[-2000:]
        raise FlavourError(f"{' '.join(argv)} failed (rc={p.returncode}): {out}")
    return p


# --------------------------------------------------------------------------
# building a tree


def _mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line sources), else deb.debian.org."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        with contextlib.suppress(OSError), open(path) as f:
            text = f.read()
            m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M
            )
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


def _clean_env() -> Dict[str, str]:
    """The environment for commands in a tree: none of the host's (its pip settings name host paths)."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CERT": "/etc/ssl/certs/kvm-telegraf-lab-host.crt",
    }


def _in_tree_script(tree: str, script: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """A shell script run chrooted in the tree with /proc, /dev and /sys mounted in a private mount namespace,
    so the mounts vanish with it whatever happens."""
    wrapper = (
        'set -e; T="$1"; shift; mount -t proc proc "$T/proc"; mount --rbind /dev "$T/dev"; '
        'mount -t sysfs sysfs "$T/sys"; exec chroot "$T" /bin/sh -ec "$0"'
    )
    argv = ["unshare", "--mount", "--propagation", "private", "--fork", "/bin/sh", "-ec", wrapper, script, tree]
    return _run(argv, timeout=timeout, env=_clean_env())


def _configure(tree: str, fl: Flavour) -> None:
    """The daemons' configuration for life without dbus, polkit and systemd, and the tree's own name."""

    def append(path: str, text: str) -> None:
        with open(tree + path, "a") as f:
            f.write(text)

    append("/etc/libvirt/qemu.conf", QEMU_CONF)
    append("/etc/libvirt/libvirtd.conf", LIBVIRTD_CONF)
    with contextlib.suppress(FileNotFoundError):  # no default network: no virbr0, no dnsmasq
        os.unlink(tree + "/etc/libvirt/qemu/networks/autostart/default.xml")
    with open(tree + "/etc/hostname", "w") as f:
        f.write(fl.hostname + "\n")
    with open(tree + "/etc/hosts", "w") as f:  # else libvirt logs getaddrinfo warnings about its hostname
        f.write(f"127.0.0.1 localhost\n127.0.1.1 {fl.hostname}\n::1 localhost ip6-localhost ip6-loopback\n")
    os.makedirs(tree + CACHE_DIR + "/guest", exist_ok=True)  # the host's guest kernels, bound in at start


def _deb_bytes(tree: str) -> int:
    d = tree + "/var/cache/apt/archives"
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".deb"))


def _versions(tree: str) -> Dict[str, str]:
    fmt = "${Package} ${Version}\n"
    out = _run(["chroot", tree, "dpkg-query", "-W", "-f", fmt, "libvirt-daemon", "qemu-system-x86", "python3"]).stdout
    versions = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    versions["python"] = _run(["chroot", tree, "python3", "-c", "import sys; print(sys.version.split()[0])"]).stdout
    versions["python"] = versions["python"].strip()
    return versions


def _stamp_path(name: str) -> str:
    return os.path.join(tree_dir(name), "built.json")


def built(name: str) -> Optional[dict]:
    """What the cached tree's build recorded, or None when there is no current tree."""
    try:
        with open(_stamp_path(name)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if stamp.get("format") != TREE_FORMAT or not os.path.exists(root(name) + "/usr/sbin/libvirtd"):
        return None
    return stamp


def build(name: str, force: bool = False) -> dict:
    """Build the flavour's tree unless a current one is cached; returns what its build recorded.

    FlavourError, with the step and its output, when it cannot be built: a flavour that cannot be built is a
    failure, never a skip.
    """
    if name == HOST:
        raise FlavourError("the host flavour is this machine's own libvirtd: nothing to build")
    with _locked(name):  # two sessions never build one tree at once: the second finds it built
        stamp = None if force else built(name)
        return stamp if stamp is not None else _build(name)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    os.makedirs(tree_dir(name), exist_ok=True)
    with open(os.path.join(tree_dir(name), "lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _build(name: str) -> dict:
    fl = flavour(name)
    stop(name)
    if not shutil.which("debootstrap"):
        log("installing debootstrap")
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], env=_host_apt_env())
    os.makedirs(tree_dir(name), exist_ok=True)
    staging = os.path.join(tree_dir(name), "root.new")
    if os.path.exists(staging):
        shutil.rmtree(staging)
    started = time.monotonic()
    mirror = _mirror()
    log(f"building the {fl.label} tree: debootstrap --variant=minbase {name} (from {mirror})")
    _run(["debootstrap", "--variant=minbase", name, staging, mirror])
    bootstrapped = time.monotonic()
    debootstrap_bytes = _deb_bytes(staging)
    with open(staging + "/usr/sbin/policy-rc.d", "w") as f:  # package scripts start no service
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(staging + "/usr/sbin/policy-rc.d", 0o755)
    with open(staging + "/etc/apt/apt.conf.d/90kvm-telegraf-lab", "w") as f:  # the mirror is a dated snapshot
        f.write('Acquire::Check-Valid-Until "false";\n')
    os.makedirs(staging + "/etc/ssl/certs", exist_ok=True)  # pip in the tree trusts what the host's pip trusts
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", staging + "/etc/ssl/certs/kvm-telegraf-lab-host.crt")
    packages = " ".join((*TREE_PACKAGES, *TREE_EXTRA_PACKAGES.get(name, ())))
    log(f"{name}: apt-get install {packages}")
    _in_tree_script(staging, "apt-get update -q; apt-get install -y -q --no-install-recommends " + packages)
    apt_bytes = _deb_bytes(staging) - debootstrap_bytes
    installed = time.monotonic()
    log(f"{name}: a venv with {' '.join(TREE_PIP)}")
    pip = " ".join(f"'{p}'" for p in TREE_PIP)
    wheels = "/tmp/kvm-telegraf-lab-wheels"
    _in_tree_script(
        staging,
        f"python3 -m venv --system-site-packages {VENV}; {VENV}/bin/pip install -q -U pip; "
        f"{VENV}/bin/pip download -q -d {wheels} {pip}; "
        f"{VENV}/bin/pip install -q --no-index --find-links {wheels} {pip}",
    )
    pip_bytes = sum(os.path.getsize(e.path) for e in os.scandir(staging + wheels))
    shutil.rmtree(staging + wheels)
    _in_tree_script(staging, "apt-get clean")
    _configure(staging, fl)
    versions = _versions(staging)
    if not versions.get("libvirt-daemon", "").startswith(fl.libvirt + "."):
        raise FlavourError(f"{name}: expected libvirt {fl.libvirt}, the tree has {versions.get('libvirt-daemon')}")
    old = os.path.join(tree_dir(name), "root")
    if os.path.exists(old):
        shutil.rmtree(old)
    os.rename(staging, old)
    stamp = {
        "format": TREE_FORMAT,
        "flavour": name,
        "versions": versions,
        "debootstrap_s": round(bootstrapped - started, 1),
        "apt_s": round(installed - bootstrapped, 1),
        "venv_s": round(time.monotonic() - installed, 1),
        "debootstrap_bytes": debootstrap_bytes,
        "apt_bytes": apt_bytes,
        "pip_bytes": pip_bytes,
        "tree_bytes": _du(old),
    }
    with open(_stamp_path(name), "w") as f:
        json.dump(stamp, f, indent=1)
    log(
        f"{name} built in {stamp['debootstrap_s'] + stamp['apt_s'] + stamp['venv_s']:.0f} s "
        f"(debootstrap {stamp['debootstrap_s']} s, apt {stamp['apt_s']} s, venv {stamp['venv_s']} s); "
        f"downloaded {(debootstrap_bytes + apt_bytes + pip_bytes) / 1e6:.0f} MB; "
        f"tree {stamp['tree_bytes'] / 1e6:.0f} MB"
    )
    return stamp


def _du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for fn in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, fn)).st_blocks * 512
    return total


def _host_apt_env() -> Dict[str, str]:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


# --------------------------------------------------------------------------
# the tree's cgroups: a folder of its own under this process's cgroup in each hierarchy


class Hierarchy(NamedTuple):
    mountpoint: str  # /sys/fs/cgroup/cpu
    fstype: str  # cgroup (v1) or cgroup2
    options: str  # what mounts it again: "cpu", "none,name=systemd"; "" for cgroup2


def hierarchies() -> List[Hierarchy]:
    """The host's cgroup hierarchies, v1 and v2, as mounted."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mountpoint, fstype, opts, *_ = line.split()
            if fstype == "cgroup2":
                found.append(Hierarchy(mountpoint, fstype, ""))
            elif fstype == "cgroup":
                names = [o for o in opts.split(",") if o not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev")]
                named = [o for o in names if o.startswith("name=")]
                found.append(Hierarchy(mountpoint, fstype, ",".join(["none", *named] if named else names)))
    return found


def _own_cgroup(h: Hierarchy) -> str:
    """This process's cgroup in hierarchy h (/proc/self/cgroup)."""
    wanted = set(h.options.replace("none,", "").split(",")) if h.fstype == "cgroup" else set()
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (h.fstype == "cgroup2" and controllers == "") or (wanted and set(controllers.split(",")) == wanted):
                return path
    return "/"


def cgroup_dirs(name: str) -> List[str]:
    """The flavour's cgroup folders, one per hierarchy. They sit under the caller's own cgroups (so the
    machine's accounting still sees the tree's guests), never under the host libvirtd's ``machine``."""
    # Named for the tree's path too: two caches' trees of one flavour never share a folder.
    tag = hashlib.sha256(tree_dir(name).encode()).hexdigest()[:8]
    return [os.path.join(h.mountpoint + _own_cgroup(h), f"kvm-telegraf-lab-{name}-{tag}") for h in hierarchies()]


def _make_cgroups(name: str) -> List[str]:
    dirs = cgroup_dirs(name)
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset takes no task until both are set
            parent = os.path.join(os.path.dirname(d), knob)
            if os.path.exists(parent) and not _read(os.path.join(d, knob)).strip():
                with open(os.path.join(d, knob), "w") as f:
                    f.write(_read(parent).strip())
    return dirs


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path) as f:
        return f.read()
    return ""


def _remove_cgroups(name: str) -> None:
    """rmdir the flavour's cgroup folders, deepest first (the kernel refuses one that still has tasks)."""
    for d in cgroup_dirs(name):
        if not os.path.isdir(d):
            continue
        for dirpath, _, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


# --------------------------------------------------------------------------
# the tree's daemons, in namespaces of their own


def _ns_pid_file(name: str) -> str:
    return os.path.join(tree_dir(name), "ns.pid")


def ns_pid(name: str) -> Optional[int]:
    """The host pid of the flavour's namespace init (this file's ``_init``), if it runs."""
    try:
        with open(_ns_pid_file(name)) as f:
            pid = int(f.read().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"_init" in f.read().split(b"\0"):
                return pid
    except (OSError, ValueError, IndexError):
        pass
    return None


def answers(name: str) -> bool:
    argv = ["virsh", "-c", uri(name), "version"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start(name: str, timeout: float = 60) -> None:
    """Start the flavour's virtlogd and libvirtd (building its tree first if need be); wait until it answers."""
    build(name)
    with _locked(name):
        if not (ns_pid(name) and answers(name)):
            _start(name, timeout)


def _start(name: str, timeout: float) -> None:
    fl = flavour(name)
    stop(name)
    tree = root(name)
    for stale in ("/run/libvirtd.pid", "/run/virtlogd.pid"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tree + stale)
    shutil.rmtree(tree + "/run/libvirt", ignore_errors=True)
    groups = _make_cgroups(name)

    def enter_cgroups() -> None:  # in the child, before unshare makes these the cgroup namespace's root
        for d in groups:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    logf = open(os.path.join(tree_dir(name), "ns.log"), "ab")  # noqa: SIM115 - handed to the child
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--net",
        "--uts",
        "--cgroup",
        "--fork",
        "--kill-child",
        f"--mount-proc={tree}/proc",
        sys.executable,
        os.path.abspath(__file__),
        "_init",
        name,
    ]
    log(f"starting {fl.label}: libvirtd as {fl.hostname}, socket {socket_path(name)}")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, preexec_fn=enter_cgroups
    )
    logf.close()
    deadline = time.monotonic() + timeout
    init = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FlavourError(f"{name}: the namespace exited (rc={proc.returncode}); see {tree_dir(name)}/ns.log")
        init = int((_read(f"/proc/{proc.pid}/task/{proc.pid}/children").split() or ["0"])[0])  # 0 until it forks
        if init:
            break
        time.sleep(0.05)
    if not init:
        raise FlavourError(f"{name}: the namespace's init did not start")
    with open(_ns_pid_file(name), "w") as f:
        f.write(f"{init}\n")
    while time.monotonic() < deadline:
        if answers(name):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    tail = _tail(tree + "/var/log/libvirt/libvirtd.log") or _tail(os.path.join(tree_dir(name), "ns.log"))
    raise FlavourError(f"{name}: libvirtd does not answer on {uri(name)}; its log ends:\n{tail}")


def _tail(path: str, lines: int = 15) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])
    return ""


def stop(name: str, timeout: float = 30) -> bool:
    """Stop the flavour's daemons: TERM to the namespace's init, which stops libvirtd; then every process in
    the namespace ends with it (the kernel kills them). Returns whether one ran."""
    pid = ns_pid(name)
    if pid is None:
        return False
    log(f"stopping the {name} daemons")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_ns_pid_file(name))
    _remove_cgroups(name)
    return True


def _init(name: str) -> None:
    """PID 1 of the flavour's namespaces: mounts, loopback, hostname, then virtlogd and libvirtd chrooted.

    It reaps orphans until SIGTERM, then stops libvirtd gracefully and exits, which ends the namespace.
    """
    fl = flavour(name)
    tree = root(name)

    def sh(*argv: str) -> None:
        subprocess.run(list(argv), check=True)

    sh("mount", "--rbind", "/dev", tree + "/dev")
    sh("mount", "-t", "sysfs", "sysfs", tree + "/sys")  # this net namespace's view
    # Each hierarchy again, as this cgroup namespace sees it: its root is the flavour's own folder.
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "cgroup", tree + "/sys/fs/cgroup")
    for h in hierarchies():
        where = tree + "/sys/fs/cgroup/" + os.path.basename(h.mountpoint)
        os.makedirs(where, exist_ok=True)
        sh("mount", "-t", h.fstype, *(["-o", h.options] if h.options else []), h.fstype, where)
    sh("mount", "--bind", "-o", "ro", CACHE_DIR + "/guest", tree + CACHE_DIR + "/guest")
    sh("ip", "link", "set", "lo", "up")
    socket.sethostname(fl.hostname)
    for argv in (["virtlogd", "-d"], ["libvirtd", "-d"]):
        subprocess.run(["chroot", tree, *argv], check=True, env=_clean_env())

    class StopError(Exception):
        """SIGTERM: stop waiting for children."""

    def on_term(_signo: int, _frame: object) -> None:
        raise StopError

    signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.5)
    except StopError:
        pass
    with contextlib.suppress(OSError, ValueError), open(tree + "/run/libvirtd.pid") as f:
        pid = int(f.read().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)


def status(name: str) -> str:
    fl = flavour(name)
    if name == HOST:
        return f"{fl.label}: the host's libvirtd, {uri(name)}"
    stamp = built(name)
    if stamp is None:
        return f"{fl.label}: not built"
    running = "running" if ns_pid(name) and answers(name) else "stopped"
    return f"{fl.label}: built ({stamp['versions'].get('libvirt-daemon')}), daemons {running}, {uri(name)}"


if __name__ == "__main__" and sys.argv[1:2] == ["_init"]:
    _init(sys.argv[2])
