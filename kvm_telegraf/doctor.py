"""``kvm-telegraf doctor``: what stands between a host and its metrics, one line per finding.

It reads through the same Collector the plugin runs, so it sees what Telegraf
will get. Findings are for a person at a terminal: stdout, each marked
``ok``, ``note``, ``warn`` or ``FAIL``, the fix on the same line. Any FAIL
means the setup cannot deliver metrics.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import time
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from kvm_telegraf.bulk_read import FROZEN, FULL, SATURATED, BulkRead
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import (
    Connection,
    LibvirtUnavailableError,
    error_message,
    open_read_write,
    redact_uri,
)
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import Group, stats_bits, stats_flags
from kvm_telegraf.groups import every_group
from kvm_telegraf.libvirt_facts import (
    DEFAULT_STATS,
    ERR_ARGUMENT_UNSUPPORTED,
    STATE_NAMES,
    STATE_RUNNING,
    STATS_ENFORCE,
    STATS_GROUP_NAMES,
    STATS_NO_DOMAINS,
    STATS_STATE,
    error_code,
    version_text,
)
from kvm_telegraf.redact import redact_argv
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot
from kvm_telegraf.worker import CallTimeoutError, Worker, answer_by

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "FAIL"

NOWAIT_SINCE = 4_005_000  # libvirt 4.5.0 added the NOWAIT flag the stuck-call fallback uses
# Present only when the guest's balloon driver reports; memory_used_bytes needs both.
GUEST_MEMORY_KEYS = ("balloon.available", "balloon.usable")
READ_ONLY_SOCKET = "/run/libvirt/libvirt-sock-ro"
GUEST_MEMORY_FIELDS = "memory_used/usable/available/unused_bytes, swap and faults"
# How long doctor waits for a full stats call that missed --timeout, to say how long it really takes.
LATE_CALL_WAIT_S = 30.0


class Finding(NamedTuple):
    level: str  # OK, NOTE, WARN or FAIL
    text: str

    def __str__(self) -> str:
        return f"{self.level:<4}  {self.text}"


def local_socket(uri: str, read_only: bool = True, exists: Callable[[str], bool] = os.path.exists) -> Optional[str]:
    """The local socket a read-only (or read-write) open of *uri* uses, as libvirt picks it; None when not local.

    A ``socket=`` parameter wins. Otherwise ``/system`` URIs go to the modular
    daemon's socket (virtqemud-sock-ro, virtqemud-sock) when it exists, else to libvirtd's.
    """
    parts = urlsplit(uri)
    given = parse_qs(parts.query).get("socket")
    if given:
        return given[0]
    driver, _, transport = parts.scheme.partition("+")
    if parts.netloc or transport not in ("", "unix") or parts.path != "/system" or not driver:
        return None
    suffix = "-sock-ro" if read_only else "-sock"
    modular = f"/run/libvirt/virt{driver}d{suffix}"
    return modular if exists(modular) else f"/run/libvirt/libvirt{suffix}"


def own_command(argv: Sequence[str]) -> str:
    """This very command line, as another user's shell can run it: the executable by absolute path, and
    credentials in its arguments hidden (``--uri qemu+ssh://***@kvm1/system``: the user puts them back).

    Telegraf's user has its own PATH, which may well lack the venv or prefix that
    holds kvm-telegraf; ``python -m kvm_telegraf`` stays an interpreter run.
    """
    program, args = (argv[0], list(argv[1:])) if argv else ("", ["doctor"])
    found = program if os.sep in program else shutil.which(program) or program
    if os.path.basename(program) == "__main__.py" or not os.path.isfile(found):  # python -m, -c, an embedder
        return shlex.join([sys.executable, "-m", "kvm_telegraf", *redact_argv(args)])
    return shlex.join([os.path.abspath(found), *redact_argv(args)])


def connect_hint(message: str, user: str, argv: Sequence[str] = ()) -> str:
    """What to do about a failed read-only open, from libvirt's message (argv: the command, for a rerun as telegraf)."""
    lowered = message.lower()
    if "no module named" in lowered:
        return "install libvirt's Python binding: apt-get install python3-libvirt and a --system-site-packages venv"
    if "failed to find user record" in lowered or "failed to find group record" in lowered:
        return (
            f"the daemon looks user {user}'s uid and gid up in its own user database and does not find them: a "
            "libvirtd in a container (Kolla, openstack-helm) has the container's /etc/passwd and /etc/group; add "
            "a group and a user with those numbers inside it (groupadd -g GID telegraf; useradd -r -M -u UID -g "
            "GID telegraf), as docs/configuration.md's Containerised libvirt says"
        )
    if "denied by policy" in lowered:
        return (
            f"a polkit rule refuses user {user} the action org.libvirt.unix.monitor, which any local user "
            "has by default: look in /etc/polkit-1/rules.d/"
        )
    if any(word in lowered for word in ("polkit", "policykit", "authoriz", "authentication", "dbus", "d-bus")):
        return (
            f"libvirt checks read-only clients such as {user} with polkit: dbus and polkitd must run (hosts "
            "without systemd: dbus-daemon --system --fork, then /usr/lib/polkit-1/polkitd, then restart libvirtd)"
        )
    if "permission denied" in lowered:
        return (
            f"the socket does not let user {user} in: use the read-only socket {READ_ONLY_SOCKET} "
            "(mode 0777 by default), or put the user in the socket's group (usermod -aG libvirt telegraf); "
            f"check as Telegraf's user: runuser -u telegraf -- {own_command(argv or sys.argv)}"
        )
    if "no such file" in lowered or "connection refused" in lowered:
        return "libvirtd (or virtqemud) is not running or the socket path is wrong: start it, and check --uri"
    return "check --uri and that libvirtd answers: virsh -r -c URI list --all"


def read_failed_hint(message: str, uri: str) -> str:
    """What to do about a connection that opened but whose stats call failed."""
    if "not supported by the connection driver" in message:  # libvirt's VIR_ERR_NO_SUPPORT wording
        return (
            "this libvirt driver has no bulk statistics call (virConnectGetAllDomainStats; libvirt 7.0's test "
            "driver lacks it): point --uri at a QEMU/KVM daemon, such as qemu:///system"
        )
    return f"check that libvirtd answers: virsh -r -c {uri} list --all"


def period_fix(domain: DomainSample, period_s: int) -> str:
    """The virsh command that sets a stats period: live for a running domain, in the config for a persistent one."""
    flags = []
    if domain.id >= 0:
        flags.append("--live")
    if domain.config is None or domain.config.persistent is not False:
        flags.append("--config")
    return f"virsh dommemstat --period {period_s} {' '.join(flags)} {shlex.quote(domain.name)}"


def memory_findings(domains: Sequence[DomainSample], period_s: int) -> List[Finding]:
    """Domains whose guest memory fields will be missing, and why; one ok line when there are none."""
    problems = []
    periods = set()
    for domain in domains:
        facts = domain.config.facts if domain.config is not None else None
        if facts is None:  # no XML, or one that does not parse
            continue
        period = facts.balloon_period
        running = domain.stats.get("state.state") == STATE_RUNNING
        if period is None:
            problems.append(
                Finding(
                    WARN,
                    f"{domain.name} has no memory balloon device, so {GUEST_MEMORY_FIELDS} are missing; "
                    f"fix: virsh edit it to hold <memballoon model='virtio'><stats period='{period_s}'/></memballoon>, "
                    "then restart the guest",
                )
            )
        elif period == 0:
            problems.append(
                Finding(
                    WARN,
                    f"{domain.name} has no balloon stats period, so {GUEST_MEMORY_FIELDS} are missing; "
                    f"fix: {period_fix(domain, period_s)}",
                )
            )
        elif running and not all(key in domain.stats for key in GUEST_MEMORY_KEYS):
            problems.append(
                Finding(
                    WARN,
                    f"{domain.name} has a balloon stats period of {period}s but its guest reports no memory "
                    f"(no balloon.available/usable), so {GUEST_MEMORY_FIELDS} are missing: load the virtio "
                    "balloon driver in the guest (Linux: virtio_balloon; Windows: virtio-win's Balloon driver "
                    "and service), or wait until it has booted",
                )
            )
        else:
            periods.add(period)
    if problems or not periods:
        return problems
    listed = ", ".join(f"{p}s" for p in sorted(periods))
    return [
        Finding(
            OK,
            f"memory stats: every domain has a balloon stats period ({listed}) "
            "and every running guest reports its memory",
        )
    ]


def timing_finding(
    first_s: float, steady_s: float, domains: int, lines: int, timeout_s: float, interval_s: float
) -> Finding:
    """How one collection compares with --timeout and Telegraf's interval."""
    took = (
        f"one collection takes {steady_s:.2f}s for {domains} domain(s), {lines} lines "
        f"(the first, which also reads each domain's XML, {first_s:.2f}s)"
    )
    slowest = max(first_s, steady_s)
    if timeout_s >= interval_s:
        return Finding(
            WARN,
            f"{took}, but --timeout {timeout_s:g}s is not below the {interval_s:g}s interval: a guest whose "
            "QEMU hangs holds the batch past the next tick; fix: set --timeout below the interval",
        )
    if slowest >= interval_s:
        return Finding(
            WARN,
            f"{took}: slower than the {interval_s:g}s interval, so ticks coalesce and batches are skipped; "
            "fix: raise interval (and --timeout with it) in the drop-in",
        )
    if slowest >= timeout_s:
        return Finding(
            WARN,
            f"{took}: as long as --timeout {timeout_s:g}s, the bulk call's deadline: a guest's QEMU may not "
            "answer (a W! line names it, and its details go missing) or the host is overloaded",
        )
    if slowest > interval_s / 2:
        return Finding(
            WARN,
            f"{took}: more than half the {interval_s:g}s interval, so a busier moment will miss a tick; "
            "fix: raise interval in the drop-in",
        )
    return Finding(OK, f"{took}: well within --timeout {timeout_s:g}s and the {interval_s:g}s interval")


def load_text() -> str:
    """This machine's load average against its CPUs, for a finding."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return "load average unknown"
    return f"load average here {load:.1f} on {os.cpu_count() or '?'} CPUs"


def deadline_finding(
    read: BulkRead,
    full_s: float,
    returned: bool,
    state_s: float,
    domains: int,
    timeout_s: float,
    load: str,
) -> Finding:
    """Why collections miss --timeout, as the bulk read found it: a frozen guest, a saturated host, or a call
    slower than --timeout. A read that could not tell yet (its own full call still out) is told by whether
    that call came back while doctor waited (*returned*)."""
    took = f"{full_s:.1f}s" if returned else f"more than {full_s:.1f}s"
    if read.trouble == FROZEN or (read.trouble is None and read.not_responding and not returned):
        return Finding(
            WARN,
            f"domains not answering: {', '.join(read.not_responding)}: their QEMU does not answer (the full stats "
            f"call is still out after {full_s:.1f}s), so what only their QEMU gives (balloon memory, disk counters) "
            "is missing until it does; every other guest is complete",
        )
    if read.trouble == SATURATED:  # not even NOWAIT answered in time, while the state group alone does
        return Finding(
            WARN,
            f"the host looks saturated: one full stats call takes {took} for {domains} domain(s), the state-only "
            f"probe {state_s:.3f}s, and NOWAIT does not make the deadline either ({load}); batches carry "
            "vm_metrics state and state_reason only, with the domains marked not responding; fix: give the "
            f"host CPU back (fewer running guests), or raise --timeout above {took} and the interval above that",
        )
    suggested = max(2 * full_s, full_s + 1)
    return Finding(
        WARN,
        f"--timeout {timeout_s:g}s is below the bulk stats call's own time ({took} for {domains} domain(s)), "
        "though no guest is frozen: every batch falls back to NOWAIT and may lack memory and disk fields; "
        f"fix: --timeout {suggested:.0f}s or more, and the interval above it",
    )


def state_probe_s(conn: Any, cap_s: float) -> float:
    """How long the state group alone takes: it needs no QEMU, so it is the daemon's own pace."""
    started = time.monotonic()
    future = Worker("doctor-state-probe").submit(lambda: conn.getAllDomainStats(STATS_STATE, 0))
    if future is not None:  # always: a new worker is never busy
        with contextlib.suppress(CallTimeoutError):
            answer_by(future, started + cap_s)
    return time.monotonic() - started


def supported_groups(conn: Any) -> Tuple[List[str], List[str]]:
    """(supported, unsupported) stats group names, each probed alone with ENFORCE_STATS.

    The probes select no domain: a guest's state (starting, hung) cannot fail
    them, and they cost no QEMU a monitor call.
    """
    supported, unsupported = [], []
    for bit, name in STATS_GROUP_NAMES:
        try:
            conn.getAllDomainStats(bit, STATS_ENFORCE | STATS_NO_DOMAINS)
        except Exception as exc:  # libvirtError
            if error_code(exc) != ERR_ARGUMENT_UNSUPPORTED:
                raise
            unsupported.append(name)
        else:
            supported.append(name)
    return supported, unsupported


def groups_finding(supported: List[str], unsupported: List[str]) -> Finding:
    needed = [name for bit, name in STATS_GROUP_NAMES if bit & DEFAULT_STATS]
    missing = [name for name in needed if name in unsupported]
    extra = [name for name in supported if name not in needed]
    if missing:
        return Finding(
            WARN,
            f"stats groups: the daemon does not support {' '.join(missing)}, so their fields are missing "
            f"(supported: {' '.join(supported) or 'none'})",
        )
    also = f"; also {' '.join(extra)}" if extra else ""
    return Finding(OK, f"stats groups: all {len(needed)} that kvm-telegraf reads ({' '.join(needed)}){also}")


def domains_finding(snapshot: Snapshot) -> Finding:
    if not snapshot.domains:
        return Finding(
            WARN,
            "no domains (none defined, or none match --domain/--exclude-domain): every batch is empty",
        )
    counts: dict = {}
    for domain in snapshot.domains:
        state = domain.stats.get("state.state")
        name = STATE_NAMES.get(state, f"state {state}") if isinstance(state, int) else "state unknown"
        counts[name] = counts.get(name, 0) + 1
    summary = ", ".join(f"{count} {name}" for name, count in sorted(counts.items(), key=lambda item: -item[1]))
    return Finding(OK, f"{len(snapshot.domains)} domain(s): {summary}")


def group_findings(conn: Any, collector: Collector, snapshot: Snapshot, read_write: bool) -> Iterator[Finding]:
    """One line per --collect group: asked or not, the libvirt it needs and the one found, on how many
    domains it is on (and how to turn it on), and what it costs besides the bulk call."""
    groups = every_group()
    checks = [group for group in groups if group.enabled is not None]
    facts = {domain.uuid: domain.config.facts if domain.config is not None else None for domain in snapshot.domains}
    try:
        records = [
            (dom.UUIDString(), stats)
            for dom, stats in conn.getAllDomainStats(DEFAULT_STATS | stats_bits(checks), stats_flags(checks))
            if collector.domain_filter(dom.name())
        ]
    except Exception:  # libvirtError: a daemon too old for one of the bits; the lines below say which
        records = []
    try:
        found = f"found {version_text(conn.getLibVersion())}"
    except Exception:  # libvirtError
        found = "found an unknown version"
    asked = {group.name for group in collector.groups}
    for group in groups:
        wanted = "on (--collect)" if group.name in asked else "off"
        if group.read_write and group.name not in asked:
            wanted += " (it needs --read-write, which opens read-write connections for its calls alone)"
        needs = f"needs libvirt {version_text(group.since)}, {found}"
        try:
            supported = group.supported_by(conn)
        except Exception:  # libvirtError: the connection broke
            supported = False
        if not supported:
            level = WARN if group.name in asked - collector.implied_groups else NOTE  # all: what the daemon serves
            yield Finding(level, f"group {group.name}: {wanted}; this daemon does not support it ({needs})")
            continue
        level, enabled = OK, ""
        if group.enabled is not None and records:
            count = sum(1 for uuid, stats in records if group.enabled(stats, facts.get(uuid)))
            enabled = f"; enabled on {count} of {len(records)} domain(s)"
            if not count:
                enabled += f" (to enable: {group.enable_hint})"
                if group.name in asked - collector.implied_groups:  # all: whatever this host has
                    level, enabled = WARN, enabled + ", so it adds nothing until one has it"
        yield Finding(level, f"group {group.name}: {wanted}; supported ({needs}){enabled}; {call_cost(group)}")


def call_cost(group: Group) -> str:
    """What a group asks libvirt for besides the default bulk call."""
    if group.calls:
        return f"extra calls: {', '.join(group.calls)}"
    if group.flags:
        return "no extra call (a flag on the bulk call)"
    if group.bits & ~DEFAULT_STATS:
        return "no extra call (its bits on the bulk call)"
    return "no extra call"


def _libvirt_findings(conn: Any, uri: str) -> Iterator[Finding]:
    """The daemon's versions and its stats groups."""
    try:
        lib_version = conn.getLibVersion()
    except Exception as exc:  # libvirtError
        yield Finding(WARN, f"cannot read the libvirt version: {error_message(exc, uri)}")
        lib_version = 0
    else:
        try:
            hypervisor = f", {conn.getType()} {version_text(conn.getVersion())}"
        except Exception:  # libvirtError: drivers without a hypervisor version
            hypervisor = ""
        if lib_version < NOWAIT_SINCE:
            yield Finding(
                WARN,
                f"libvirt {version_text(lib_version)}{hypervisor}: older than 4.5.0, so a guest whose QEMU hangs "
                "blocks the collection instead of costing only its own details",
            )
        else:
            yield Finding(OK, f"libvirt {version_text(lib_version)}{hypervisor}")
    try:
        yield groups_finding(*supported_groups(conn))
    except Exception as exc:  # libvirtError: the connection broke mid-probe
        yield Finding(WARN, f"cannot probe the stats groups: {error_message(exc, uri)}")


def _timed_cycle(collector: Collector, encoder: LineEncoder, history: dict) -> Tuple[float, Snapshot, int, dict]:
    """One collection as a newline costs it: read, shape, encode (not written)."""
    started = time.perf_counter()
    snapshot = collector.collect()
    points, history = shape_snapshot(snapshot, history)
    lines = encoder.encode(points, snapshot.timestamp_ns).count("\n")
    return time.perf_counter() - started, snapshot, lines, history


def agent_connection_finding(collector: Collector, user: str) -> Finding:
    """Whether the guest agent's own read-write connection opens, and over which socket: its calls need it."""
    uri = collector.connection.uri
    socket = local_socket(uri, read_only=False)
    over = f" over {socket}" if socket else ""
    own = collector.own_connection() if collector.own_connection is not None else Connection(uri, open_read_write)
    try:
        own.get()
    except LibvirtUnavailableError as exc:
        return Finding(
            FAIL,
            f"guest agent calls: {exc}; fix: the read-write socket{over} must let user {user} in (root, or a polkit "
            "rule granting org.libvirt.unix.manage), or drop --read-write and --collect guest",
        )
    finally:
        own.close()
    return Finding(
        OK,
        f"guest agent calls: connected to {redact_uri(uri)} read-write{over}, as user {user} (their own connections)",
    )


def diagnose(
    collector: Collector, interval_s: float, user: str, argv: Sequence[str] = (), read_write: bool = False
) -> Iterator[Finding]:
    """The findings in order; it stops after a FAIL that leaves nothing else to check.

    argv: the command line, to tell root how to rerun it as telegraf (default: this process's).
    read_write: whether the guest agent's own connections open read-write (--read-write, with --collect guest);
    the statistics connection is read-only whatever it says.
    """
    argv = argv or sys.argv
    uri = collector.connection.uri
    try:
        conn = collector.connection.get()
    except LibvirtUnavailableError as exc:
        yield Finding(FAIL, f"{exc}; fix: {connect_hint(str(exc), user, argv)}")
        return
    socket = local_socket(uri)
    over = f" over {socket}" if socket else ""
    yield Finding(OK, f"connected to {redact_uri(uri)} read-only{over}, as user {user} (statistics)")
    if read_write:
        yield agent_connection_finding(collector, user)
    if user == "root" and socket:
        yield Finding(
            NOTE,
            "libvirt lets root in whatever its socket and polkit say; Telegraf runs kvm-telegraf as user "
            f"telegraf: check that user too with runuser -u telegraf -- {own_command(argv)}",
        )
    yield from _libvirt_findings(conn, uri)
    encoder = LineEncoder()
    try:
        first_s, _, _, history = _timed_cycle(collector, encoder, {})
        steady_s, snapshot, lines, _ = _timed_cycle(collector, encoder, history)
    except LibvirtUnavailableError as exc:
        yield Finding(FAIL, f"{exc}; fix: {read_failed_hint(str(exc), redact_uri(uri))}")
        return
    yield domains_finding(snapshot)
    yield from group_findings(conn, collector, snapshot, read_write)
    read = collector.last_read
    assert read is not None  # a cycle has run
    judged = snapshot.domains
    if read.tier != FULL:  # a domain whose QEMU gave nothing this time has nothing to judge
        judged = tuple(d for d in judged if d.responding and "balloon.rss" in d.stats)
    yield from memory_findings(judged, max(1, int(interval_s)))
    if read.tier == FULL:
        yield timing_finding(first_s, steady_s, len(snapshot.domains), lines, collector.timeout_s, interval_s)
        return
    full_s, returned = collector.reader.settle(0 if read.trouble == FROZEN else LATE_CALL_WAIT_S)
    state_s = state_probe_s(conn, LATE_CALL_WAIT_S)
    yield deadline_finding(read, full_s, returned, state_s, len(snapshot.domains), collector.timeout_s, load_text())
