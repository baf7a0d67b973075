"""The one bulk read per cycle, under a hard deadline, in tiers; and what happened, as a value.

Each tier runs on a persistent worker of its own (kvm_telegraf.worker), and no
cycle waits for one past ``--timeout`` + STATE_GRACE_S, whatever libvirt does:

1. full stats, until ``--timeout``;
2. NOWAIT, which skips the domains whose job is busy (a guest whose QEMU does
   not answer holds its job), until ``--timeout`` + NOWAIT_GRACE_S;
3. the state group alone, which needs no QEMU and answers in about a
   millisecond even on a saturated host, until ``--timeout`` + STATE_GRACE_S.

Both fallbacks start FALLBACK_LEAD_S before ``--timeout`` when the full call is
not in by then, not at it: a NOWAIT answer that takes more than its grace (the
healthy guests' QEMU monitors, on a busy machine) still makes the batch.

Each fallback calls over a connection of its own, opened on its first call: on
one connection, libvirt's client can leave a call unsent behind another that
waits (a wake-up lost between two threads, libvirt 9.0's client; seen against the
7.0 and 12.8 daemons), until a reply or the next keepalive probe 5 s later comes.
Behind a full call that a frozen guest holds, the fallbacks missed their deadline
that way (NOWAIT and state alike, 1.5 to 5 s), and the cycle printed nothing.

A late answer is dropped: its domains were read at instants spread over the
whole late call, up to an interval before the next batch, so sending it then
would pass old values off as new and skew every rate.

With ``--domain`` / ``--exclude-domain`` each tier asks for the chosen domains
only: the domain list (one call, no QEMU), then virDomainListGetStats on those,
both on the tier's worker under its deadline. On 20 guests choosing 5 that costs
libvirtd and the QEMUs a quarter of reading all 20 and filtering, and this process
30 % less; one left out of 20 costs the same either way (docs/performance.md,
benchmarks/domain_list.py).

The read returns a BulkRead: which tier answered, and why not the full one
(a frozen guest, a call slower than --timeout, a saturated host). Collect logs
it (Episodes), doctor reports it; neither works it out again.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, List, NamedTuple, Optional, Set, Tuple

from kvm_telegraf.connection import Connection, LibvirtUnavailableError, on_live
from kvm_telegraf.group import RawStats
from kvm_telegraf.libvirt_facts import STATE_RUNNING, STATS_NOWAIT, STATS_STATE
from kvm_telegraf.log import get_logger
from kvm_telegraf.worker import Call, CallTimeoutError, Worker, answer_by

log = get_logger(__name__)

# How far past --timeout each fallback tier may answer.
NOWAIT_GRACE_S = 0.3
STATE_GRACE_S = 0.4
# How long before --timeout the fallbacks start when the full call is not in by then (at most half of --timeout).
# With one guest frozen, a NOWAIT call took 0.3 to 0.9 s now and then in the fresh-clone CI (healthy: 6-50 ms),
# and with the fallbacks started at --timeout that cycle came as state only. Most likely those were calls held
# behind the stuck full call on its connection (the module's docstring), which the fallbacks' own connections
# end; the lead stays as margin for a NOWAIT call slower than its grace on a busy host. The cost: a full call
# that answers in its last FALLBACK_LEAD_S also has its fallbacks made, and their answers dropped.
FALLBACK_LEAD_S = 0.5

# Which tier answered a cycle's bulk read.
FULL, NOWAIT, STATE_ONLY = "full", "nowait", "state-only"
# Why a cycle was not full: a guest's QEMU does not answer; the call as a whole is slower than
# --timeout; neither full nor NOWAIT answered by the deadline (a saturated host).
FROZEN, SLOW, SATURATED = "frozen", "slow", "saturated"


class BulkRead(NamedTuple):
    """One cycle's bulk read: the records, the tier that answered them, and why not the full one."""

    records: RawStats
    tier: str  # FULL, NOWAIT or STATE_ONLY
    trouble: Optional[str]  # FROZEN, SLOW, SATURATED; None when full, or when the next cycle will tell
    not_responding: Tuple[str, ...]  # the running domains whose QEMU did not answer this cycle
    full_call_s: float  # the slowest full call since full answers last came in time, or how long the one out has run
    full_call_returned: bool  # whether full_call_s was measured on a call that came back
    domains_listed: int  # how many domains the host has, chosen or not (the records, when all are read)
    conn: Any  # the connection the records came over: the groups' calls use it too, never behind a stuck call


Chosen = Callable[[str], bool]  # --domain / --exclude-domain, on a domain's name


Answer = Tuple[RawStats, int, Any]  # records, domains on the host, the connection they came over


def read_stats(conn: Any, stats: int, flags: int, chosen: Optional[Chosen]) -> Answer:
    """(records, domains on the host, conn): every domain in one call, or the list and then the chosen ones' stats.

    A domain gone between the two calls is left out by libvirt (virDomainListGetStats skips it).
    """
    if chosen is None:
        records = conn.getAllDomainStats(stats, flags)
        return records, len(records), conn
    listed = conn.listAllDomains(0)
    picked = [dom for dom in listed if chosen(dom.name())]
    return (conn.domainListGetStats(picked, stats, flags) if picked else []), len(listed), conn


def unresponsive_domains(records: RawStats) -> List[str]:
    """Running domains whose NOWAIT answer lacks what only their QEMU monitor gives."""
    names = []
    for dom, stats in records:
        if stats.get("state.state") != STATE_RUNNING:
            continue
        disks = stats.get("block.count") or 0
        if "balloon.rss" not in stats or (disks and "block.0.rd.reqs" not in stats):
            names.append(dom.name())
    return names


def running_domains(records: RawStats) -> List[str]:
    return [dom.name() for dom, stats in records if stats.get("state.state") == STATE_RUNNING]


class TieredRead:
    """The bulk read in three tiers, each on one persistent worker, none waited for past the deadline; the full
    call over the collector's connection, each fallback over one of its own.

    A worker whose call is still out takes no new one, so at most three stats
    calls per host are outstanding in libvirtd at any time, whatever the load:
    one full, one NOWAIT, one state-only (libvirtd serves five at once per
    client by default).
    """

    def __init__(self, timeout_s: float, connect: Callable[[], Connection], chosen: Optional[Chosen] = None) -> None:
        self.timeout_s = timeout_s
        self.chosen = chosen  # None: read every domain in one call
        self._full = Worker("bulk-stats")
        self._nowait = Worker("bulk-stats-nowait")
        self._state = Worker("bulk-stats-state")
        self._nowait_connection = connect()  # each used by its worker alone
        self._state_connection = connect()
        self._full_started = 0.0
        self._slowest_full_s = 0.0  # the slowest full call that returned since full answers last came in time

    @property
    def stuck(self) -> bool:
        """Whether a full call is still out after missing its deadline."""
        return self._full.busy

    def full_call_time(self) -> Tuple[float, bool]:
        """(seconds, whether measured): the slowest late full call that came back, else how long the one out has run."""
        if self.stuck and self._slowest_full_s <= self.timeout_s:
            return max(self._slowest_full_s, time.monotonic() - self._full_started), False
        return self._slowest_full_s, True

    def settle(self, wait_s: float) -> Tuple[float, bool]:
        """Wait up to *wait_s* for a full call still out (doctor measures it); then full_call_time()."""
        deadline = time.monotonic() + wait_s
        while self.stuck and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.full_call_time()

    def read(self, conn: Any, stats: int, flags: int, started: float) -> BulkRead:
        """The records of the first tier that answers by *started* + timeout + its grace; a failed call raises.

        LibvirtUnavailableError when no tier answered in time.
        """
        (records, listed, over), tier, carried_over = self._tiers(conn, stats, flags, started)
        full_s, returned = self.full_call_time()
        if tier == FULL:
            self._slowest_full_s = 0.0
            return BulkRead(records, tier, None, (), full_s, returned, listed, over)
        if tier == STATE_ONLY:
            return BulkRead(records, tier, SATURATED, tuple(running_domains(records)), full_s, returned, listed, over)
        # A NOWAIT answer also lacks the domain that a slow but healthy full call holds at that moment,
        # so a guest is called frozen only once the full call it blocks has been out since an earlier
        # cycle; a full call that missed its deadline and came back means the call as a whole is slow.
        marked = tuple(unresponsive_domains(records))
        if self.stuck and carried_over and marked:
            return BulkRead(records, tier, FROZEN, marked, full_s, returned, listed, over)
        if self.stuck and self._slowest_full_s <= self.timeout_s and marked:
            # frozen or slow: the next cycle tells
            return BulkRead(records, tier, None, marked, full_s, returned, listed, over)
        return BulkRead(records, tier, SLOW, (), full_s, returned, listed, over)

    def _full_call(self, conn: Any, stats: int, flags: int) -> Answer:
        started = time.monotonic()
        answer = read_stats(conn, stats, flags, self.chosen)
        self._slowest_full_s = max(self._slowest_full_s, time.monotonic() - started)
        return answer

    def _tiers(self, conn: Any, stats: int, flags: int, started: float) -> Tuple[Answer, str, bool]:
        """(the answer, its tier, whether a full call was out since an earlier cycle)."""
        for worker in (self._full, self._nowait, self._state):
            worker.start()  # all at once: a first fallback, however late, adds no thread
        carried_over = self.stuck
        full = None if carried_over else self._full.submit(lambda: self._full_call(conn, stats, flags))
        if full is not None:
            self._full_started = started
            with contextlib.suppress(CallTimeoutError):
                lead_s = min(FALLBACK_LEAD_S, self.timeout_s / 2)
                return answer_by(full, started + self.timeout_s - lead_s), FULL, carried_over
        fallbacks = self._fallbacks(stats, flags)
        if full is not None:
            with contextlib.suppress(CallTimeoutError):
                return answer_by(full, started + self.timeout_s), FULL, carried_over
        for future, tier, grace_s in fallbacks:
            if future is None:  # its call of an earlier cycle is still out
                continue
            with contextlib.suppress(CallTimeoutError):
                return answer_by(future, started + self.timeout_s + grace_s), tier, carried_over
        raise LibvirtUnavailableError(
            f"libvirt answered no stats call within {self.timeout_s + STATE_GRACE_S:g}s, not even for the state alone"
        )

    def _fallbacks(self, stats: int, flags: int) -> Tuple[Tuple[Optional[Call], str, float], ...]:
        """NOWAIT and the state-only call, started; (call or None while its worker's last is out, tier, grace)."""
        chosen = self.chosen
        # Both fallbacks at once: the state-only call costs libvirtd a millisecond and no QEMU,
        # and is then in hand the moment NOWAIT misses its deadline.
        nowait = self._nowait.submit(
            lambda: on_live(self._nowait_connection, lambda conn: read_stats(conn, stats, flags | STATS_NOWAIT, chosen))
        )
        state = self._state.submit(
            lambda: on_live(self._state_connection, lambda conn: read_stats(conn, STATS_STATE, flags, chosen))
        )
        return (nowait, NOWAIT, NOWAIT_GRACE_S), (state, STATE_ONLY, STATE_GRACE_S)

    def close(self) -> None:
        self._nowait_connection.close()
        self._state_connection.close()


class Episodes:
    """What the log says of the reads: one W! per episode of trouble, one I! when full answers resume.

    A frozen guest is still named if the episode began otherwise.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._kinds: Set[str] = set()

    def note(self, read: BulkRead) -> None:
        if read.tier == FULL:
            if self._kinds:
                log.info(
                    "full stats answer within --timeout %gs again (the slowest call took %.1fs); full batches resume",
                    self.timeout_s,
                    read.full_call_s,
                )
                self._kinds.clear()
            return
        kind = read.trouble
        if kind is None:
            return
        if not self._kinds or (kind == FROZEN and FROZEN not in self._kinds):
            self._warn(read)
        self._kinds.add(kind)

    def _warn(self, read: BulkRead) -> None:
        if read.trouble == FROZEN:
            log.warning(
                "stats call did not return within %gs (domains not answering: %s); "
                "reporting what libvirt has without waiting until it does",
                self.timeout_s,
                ", ".join(read.not_responding),
            )
            return
        seconds = read.full_call_s
        took = (
            f"full stats took {seconds:.1f}s"
            if read.full_call_returned
            else (f"full stats still unanswered after {seconds:.1f}s")
        )
        if read.trouble == SLOW:
            log.warning(
                "the bulk stats call as a whole is slower than --timeout %gs (%s), though no guest is frozen: "
                "every batch falls back to NOWAIT and may lack memory and disk fields; fix: raise --timeout "
                "above the call's time",
                self.timeout_s,
                took,
            )
        else:
            log.warning(
                "libvirt answered too slowly for the batch deadline (%s); reporting state only until it recovers",
                took,
            )
