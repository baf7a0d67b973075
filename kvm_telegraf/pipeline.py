"""One cycle: collect, shape, encode, write; and how failures are reported."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

from kvm_telegraf.connection import LibvirtUnavailableError
from kvm_telegraf.domain_filter import DeviceFilter
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import Group
from kvm_telegraf.log import get_logger
from kvm_telegraf.measurements import MEASUREMENTS, Reading
from kvm_telegraf.plans import ShapePlans
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import SnapshotSource
from kvm_telegraf.trigger import Shutdown
from kvm_telegraf.write import BatchWriter

log = get_logger(__name__)


@dataclass
class Pipeline:
    source: SnapshotSource
    writer: BatchWriter
    shutdown: Shutdown
    measurements: FrozenSet[str] = frozenset(MEASUREMENTS)
    groups: Tuple[Group, ...] = ()  # --collect
    devices: DeviceFilter = field(default_factory=DeviceFilter)  # --device, --exclude-device
    encoder: LineEncoder = field(default_factory=LineEncoder)
    plans: ShapePlans = field(default_factory=ShapePlans)
    _history: Dict[str, Reading] = field(default_factory=dict, init=False)
    _last_cycle_ns: Optional[int] = field(default=None, init=False)  # the previous cycle, newline to flush
    _outage: Optional[str] = field(default=None, init=False)

    def cycle(self) -> None:
        """One batch; LibvirtUnavailableError propagates (``--once`` turns it into exit 1)."""
        began = time.monotonic_ns()
        if self.shutdown.take_reload():
            self.source.forget_configs()
        snapshot = self.source.collect()
        points, self._history = shape_snapshot(
            snapshot, self._history, self.measurements, self.groups, self._last_cycle_ns, self.devices, self.plans
        )
        batch = self.encoder.encode(points, snapshot.timestamp_ns)
        with self.shutdown.writing():
            self.writer.write(batch)
        self._last_cycle_ns = time.monotonic_ns() - began

    def survive_cycle(self) -> None:
        """A cycle for the long-running modes: failures are logged once per outage, never fatal.

        BrokenPipeError (stdout closed) and SystemExit still end the process.
        """
        try:
            self.cycle()
        except LibvirtUnavailableError as exc:
            if self._outage is None:  # once per outage, however its message changes while libvirtd restarts
                log.error("%s; no metrics until it recovers (retrying every cycle)", exc)
            self._outage = str(exc)
            return
        except (BrokenPipeError, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug must cost a batch, not the host's telemetry
            log.error("cycle failed: %s: %s", type(exc).__name__, exc)
            log.debug("cycle failed", exc_info=True)
            return
        if self._outage is not None:
            log.info("libvirt answers again; collecting")
            self._outage = None
