"""``--collect guest``: each domain's own view through its QEMU guest agent, read on a slow cadence.

One virDomainGetGuestInfo call per domain whose agent channel is connected, once
per ``--guest-refresh`` at most, on threads of their own, each with a connection
of its own: libvirt 9.0 waits for an agent that does not answer for as long as it
takes (no timeout by default), so such a call may never come back. A call out for
longer than GUEST_CALL_DEADLINE_S marks its domain ``agent_responding=false``,
another thread serves the domains behind it, and the domain is not asked again
until its call returns. Off the stats connection, a call that hangs does not hold
one of the few requests libvirtd serves at once per client (``max_client_requests``,
5 by default) that the stats calls need. One connection per thread, because
libvirt's client loses the wake-up of a call queued while another thread's call
holds the connection's I/O: beside a hung call, a healthy agent's call on the same
connection reached libvirtd only when something else woke that loop (3.1 s and
4.1 s late on the lab, and two CI runs in nine flapped). What each domain last
answered is kept, as plain data, until the next refresh.

A guest controls every string its agent returns: the guest group cuts each to
GUEST_STRING_MAX_CHARS where it becomes a field or a tag, and this module says
once per domain what was cut. A guest with many mounts (or users) makes libvirt
refuse the whole answer for too many parameters (2,048 at most): the call is made
again without that part, so the rest of vm_guest survives, with one W! per episode.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from kvm_telegraf.connection import Connection, error_message
from kvm_telegraf.libvirt_facts import (
    ERR_RPC,
    GUEST_INFO_FILESYSTEM,
    GUEST_INFO_HOSTNAME,
    GUEST_INFO_LOAD,
    GUEST_INFO_LOAD_SINCE,
    GUEST_INFO_OS,
    GUEST_INFO_TIMEZONE,
    GUEST_INFO_USERS,
    STATE_RUNNING,
    error_code,
)
from kvm_telegraf.log import clip, get_logger
from kvm_telegraf.snapshot import DomainConfig

log = get_logger(__name__)

# How long one domain's agent may take before it counts as not responding, and the cycle stops waiting for it.
GUEST_CALL_DEADLINE_S = 2.0
# Threads for the agent calls at most: each agent that never answers holds one until it does.
GUEST_MAX_THREADS = 8
GUEST_INFO_TYPES = GUEST_INFO_USERS | GUEST_INFO_OS | GUEST_INFO_TIMEZONE | GUEST_INFO_HOSTNAME | GUEST_INFO_FILESYSTEM
GUEST_WAIT_STEP_S = 0.05
# What one string from a guest may be in a field or a tag (README: Security): os-release fields, host name, time
# zone, mount points, filesystem types. Past it: its first GUEST_STRING_MAX_CHARS and "...(N more characters)".
GUEST_STRING_MAX_CHARS = 1024
# The parts of an answer that grow with the guest (parameters per mount, per logged-in user), left out in this order
# while libvirt refuses the whole answer for having more parameters than its RPC carries (2,048).
GUEST_INFO_GROWING = ((GUEST_INFO_FILESYSTEM, "filesystems"), (GUEST_INFO_USERS, "users"))
# Meanwhile its domain is asked without them (a refused whole answer cost the lab's 2,000-mount guest 1.4 s, and
# with the second call its 2 s deadline), and for the whole answer again this often.
GUEST_WHOLE_RETRY_S = 600.0
TOO_MANY_PARAMETERS = "too many parameters"  # libvirt's virTypedParamsSerialize, under VIR_ERR_RPC


def too_many_parameters(exc: BaseException) -> bool:
    """Whether libvirt refused an answer for carrying more typed parameters than its RPC allows."""
    return error_code(exc) == ERR_RPC and TOO_MANY_PARAMETERS in str(exc)


def guest_info(dom: Any, types: int) -> Tuple[Dict[str, Any], int, str]:
    """The agent's answer; while libvirt refuses it for too many parameters, asked again without the next growing
    part. Returns the answer, the types it carries, and libvirt's reason for leaving some out ("" when none)."""
    reason = ""
    while True:
        try:
            return dict(dom.guestInfo(types, 0)), types, reason
        except Exception as exc:  # libvirtError
            growing = [bit for bit, _ in GUEST_INFO_GROWING if types & bit]
            if not growing or not too_many_parameters(exc):
                raise
            reason = error_message(exc)
            types &= ~growing[0]


def left_out(asked: int, carried: int) -> List[str]:
    """The growing parts of *asked* that *carried* lacks, by name."""
    return [name for bit, name in GUEST_INFO_GROWING if asked & bit and not carried & bit]


def long_strings(answer: Mapping[str, Any]) -> List[str]:
    """The keys of the strings in an agent's answer past GUEST_STRING_MAX_CHARS, with their length."""
    return [
        f"{key} {len(value)}"
        for key, value in answer.items()
        if isinstance(value, str) and len(value) > GUEST_STRING_MAX_CHARS
    ]


def guest_info_types(lib_version: Optional[int]) -> int:
    """The info types to ask for: load averages only from libvirt 11.2 on (older ones refuse the bit)."""
    if lib_version is not None and lib_version >= GUEST_INFO_LOAD_SINCE:
        return GUEST_INFO_TYPES | GUEST_INFO_LOAD
    return GUEST_INFO_TYPES


@dataclass
class GuestAgents:
    """The agent calls of one host: who is asked when, what each answered, which calls are still out.

    The collecting thread calls ask() and results(); the call threads only take
    from the queue and put their answers, under the one lock.
    """

    connection: Connection  # off the stats connection, for the version; each call thread opens one of its own
    refresh_s: float = 60.0
    monotonic: Callable[[], float] = time.monotonic  # the refresh cadence; the calls' deadlines use real time
    _lock: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: Deque[str] = field(default_factory=collections.deque, init=False)  # UUIDs waiting for a thread
    _out: Dict[str, float] = field(default_factory=dict, init=False)  # UUID -> when its call began
    _answers: Dict[str, Dict[str, Any]] = field(default_factory=dict, init=False)  # the last good answer
    _failed: Set[str] = field(default_factory=set, init=False)  # whose last call failed
    _cut: Set[str] = field(default_factory=set, init=False)  # whose long strings were said (once per domain)
    # whose answer lacks a part libvirt could not carry: UUID -> (the types it carried, when to ask for all again)
    _partial: Dict[str, Tuple[int, float]] = field(default_factory=dict, init=False)
    _threads: int = field(default=0, init=False)
    _due: float = field(default=float("-inf"), init=False)
    _types: int = field(default=GUEST_INFO_TYPES, init=False)

    def calls(
        self,
        records: List[Tuple[Any, Dict[str, Any]]],
        configs: Mapping[str, DomainConfig],
        not_responding: Sequence[str],
        deadline: float,
    ) -> Dict[str, Dict[str, Any]]:
        """What the agents of the running domains whose channel the XML shows connected answered last.

        Asked once per refresh; each batch carries the last answer, as ``{"guest": ...}`` of that
        domain's calls. Not for a domain whose QEMU did not answer this cycle.
        """
        connected = []
        for dom, stats in records:
            config = configs.get(dom.UUIDString())
            facts = config.facts if config is not None else None
            if stats.get("state.state") != STATE_RUNNING or dom.name() in not_responding or facts is None:
                continue
            if facts.agent_state == "connected":
                connected.append(dom.UUIDString())
        self.ask(connected, deadline)
        return {uuid: {"guest": answer} for uuid, answer in self.results(connected).items()}

    def ask(self, uuids: Iterable[str], deadline: float) -> None:
        """Queue the domains whose agent is connected, when a refresh is due, and wait for them until *deadline*.

        The wait ends once every call of this refresh has answered or is past its own
        deadline; a call still out is not queued again.
        """
        now = self.monotonic()
        if now < self._due:
            return
        self._due = now + self.refresh_s
        try:
            conn = self.connection.get()
            self._types = guest_info_types(conn.getLibVersion())
        except Exception as exc:  # LibvirtUnavailableError, libvirtError: no agent calls this refresh
            log.debug("guest agent calls: %s", error_message(exc, self.connection.uri))
            self.connection.close()
            return
        with self._lock:
            for uuid in uuids:
                if uuid not in self._out and uuid not in self._queue:
                    self._queue.append(uuid)
        while True:
            with self._lock:
                moving = self._spawn()
                waiting = (self._queue and moving) or any(
                    time.monotonic() - started < GUEST_CALL_DEADLINE_S for started in self._out.values()
                )
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    return
                self._lock.wait(min(GUEST_WAIT_STEP_S, remaining))

    def _spawn(self) -> bool:
        """One more call thread when domains wait and every thread is held past the deadline (under the lock).

        False when none is moving and no more may start (every one waits on an agent that does not answer).
        """
        moving = self._threads - sum(
            1 for started in self._out.values() if time.monotonic() - started >= GUEST_CALL_DEADLINE_S
        )
        if self._queue and moving <= 0 and self._threads < GUEST_MAX_THREADS:
            self._threads += 1
            moving += 1
            threading.Thread(target=self._serve, name="guest-agent", daemon=True).start()
        return moving > 0

    def _serve(self) -> None:
        """Serve the queue on a connection of this thread's own, closed when the queue is empty (see the module)."""
        own = self.connection.another()
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._threads -= 1
                        return
                    uuid = self._queue.popleft()
                    self._out[uuid] = time.monotonic()
                    carried, whole_due = self._partial.get(uuid, (self._types, 0.0))
                    types = self._types if self.monotonic() >= whole_due else carried
                answer: Optional[Dict[str, Any]] = None
                try:
                    dom = own.get().lookupByUUIDString(uuid)
                    answer, carried, reason = guest_info(dom, types)
                    self._say(uuid, dom, answer, carried, reason)
                except Exception as exc:  # LibvirtUnavailableError, libvirtError: no agent, an agent error, gone
                    log.debug("guest agent of %s: %s", uuid, error_message(exc, own.uri))
                with self._lock:
                    del self._out[uuid]
                    if answer is None:
                        self._failed.add(uuid)
                    else:
                        self._answers[uuid] = answer
                        self._failed.discard(uuid)
                    self._lock.notify_all()
        finally:
            own.close()

    def _say(self, uuid: str, dom: Any, answer: Mapping[str, Any], carried: int, reason: str) -> None:
        """One W! per domain whose agent gave strings past the bound, and one per episode of parts left out
        (an episode: from a refusal to a whole answer; the parts stay out until GUEST_WHOLE_RETRY_S has passed)."""
        parts = left_out(self._types, carried)
        with self._lock:
            too_long = long_strings(answer) if uuid not in self._cut else []
            if too_long:
                self._cut.add(uuid)
            began, ended = bool(parts) and uuid not in self._partial, not parts and uuid in self._partial
            if not parts:
                self._partial.pop(uuid, None)
            elif reason or began:  # refused now: ask for all again only after a while
                self._partial[uuid] = (carried, self.monotonic() + GUEST_WHOLE_RETRY_S)
        name = dom.name() if too_long or began or ended else ""
        if too_long:
            log.warning(
                "domain %s: its guest agent gave strings longer than %d characters (%s); vm_guest and vm_filesystems "
                "write at most that much of any",
                name,
                GUEST_STRING_MAX_CHARS,
                clip(", ".join(too_long)),
            )
        if began:
            log.warning(
                "domain %s: libvirt cannot carry its guest agent's whole answer (%s); asking without its %s, "
                "so vm_guest has the rest",
                name,
                reason,
                " and ".join(parts),
            )
        elif ended:
            log.info("domain %s: libvirt carries its guest agent's whole answer again", name)

    def results(self, uuids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        """Per domain whose agent is connected: ``{"responding": bool, "info": {...}}``, as the Snapshot keeps it.

        A domain whose call failed, or is out past the deadline, is ``responding: false`` with no
        info; one not answered yet is left out. Domains not in *uuids* are forgotten.
        """
        wanted = set(uuids)
        results: Dict[str, Dict[str, Any]] = {}
        with self._lock:
            for uuid in [uuid for uuid in self._answers if uuid not in wanted]:
                del self._answers[uuid]
            self._failed &= wanted
            self._cut &= wanted
            for uuid in [uuid for uuid in self._partial if uuid not in wanted]:
                del self._partial[uuid]
            for uuid in sorted(wanted):
                started = self._out.get(uuid)
                hung = started is not None and time.monotonic() - started >= GUEST_CALL_DEADLINE_S
                if hung or uuid in self._failed:
                    results[uuid] = {"responding": False}
                elif uuid in self._answers:
                    results[uuid] = {"responding": True, "info": self._answers[uuid]}
        return results

    def pending(self) -> Tuple[int, int]:
        """(calls out, threads): what doctor and the tests look at."""
        with self._lock:
            return len(self._out), self._threads

    def close(self) -> None:
        self.connection.close()
