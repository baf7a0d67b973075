"""kvm-telegraf, the bare call, collectd's virt plugin and the Prometheus exporter, interleaved on collectd's grid.

collectd reads on its own 1 s grid. The bench first finds where in the second its reads fall (from
its CPU time, sampled every 2 ms), then plays rounds of exactly 3 s aligned to that grid: second 1,
the bare call and one kvm-telegraf cycle (alternating which goes first); second 2, one exporter
scrape; second 3, a fresh kvm-telegraf started for the start-up figure. So no two contenders talk
to libvirtd at the same time, and each 3 s window holds exactly three collectd reads. The latency
ratio is the median of the per-round ratios of kvm-telegraf to the bare call made in the same second.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks import procstat
from benchmarks.contenders import URI, BareCall, CpuMeter, KvmTelegraf, start_to_first_batch
from benchmarks.peers import Collectd, Exporter


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Series:
    """Per-cycle samples of one contender; failed cycles are counted, not sampled."""

    wall_s: List[float] = field(default_factory=list)
    cpu_s: List[float] = field(default_factory=list)
    out_bytes: List[int] = field(default_factory=list)
    paired_ratio: List[float] = field(default_factory=list)  # to the bare call made in the same second
    failures: List[str] = field(default_factory=list)

    def median(self, name: str) -> Optional[float]:
        values = getattr(self, name)
        return statistics.median(values) if values else None


def new_series(*names: str) -> Dict[str, Series]:
    return {name: Series() for name in names}


def measure(series: Series, sample: Callable[[Series], None]) -> None:
    """One cycle; a failure (libvirtd restarted by someone else, a timeout) is counted and the run goes on."""
    try:
        sample(series)
    except Exception as exc:  # any failure costs one sample, never the run
        series.failures.append(f"{type(exc).__name__}: {exc}")
        log(f"cycle failed: {type(exc).__name__}: {exc}")


def collectd_phase(pid: int, seconds: float = 3.0, step: float = 0.002) -> Tuple[float, float]:
    """(offset within the second at which collectd's reads start, how long their CPU bursts last)."""
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        samples.append((time.time(), procstat.schedstat_cpu_ns(pid)))
        time.sleep(step)
    active = [t1 for (_, c0), (t1, c1) in zip(samples, samples[1:]) if c1 - c0 > 200_000]
    bursts: List[List[float]] = []
    for moment in active:
        if bursts and moment - bursts[-1][-1] < 0.2:
            bursts[-1].append(moment)
        else:
            bursts.append([moment])
    if not bursts:
        return 0.0, 0.5
    starts = [burst[0] % 1.0 for burst in bursts]
    return statistics.median(starts), max(burst[-1] - burst[0] for burst in bursts)


def sleep_until(wall_clock: float) -> None:
    delay = wall_clock - time.time()
    if delay > 0:
        time.sleep(delay)


@dataclass
class PeersResult:
    paused: Dict[str, Series]  # bare, kvm, collectd, exporter
    live: Dict[str, Series]  # bare, kvm, collectd with some guests running
    start_s: List[float]
    rss_mib: Dict[str, float]
    stat_mean_s: Dict[str, Optional[float]]
    domains_on_host: int
    exporter_domains: int
    lines_per_batch: int
    running: int = 0


class PeerRounds:
    """The four contenders, started once; collectd started anew for each set of rounds (its device list)."""

    def __init__(self, workdir: str, glob: str, argv: Sequence[str], prefix: str) -> None:
        self.workdir, self.argv, self.prefix = workdir, list(argv), prefix
        self.bare = BareCall(glob)
        self.kvm = KvmTelegraf(argv)
        self.exporter = Exporter(workdir, URI)
        self.collectds: List[Collectd] = []
        self.start_s: List[float] = []
        self.meters: Dict[str, CpuMeter] = {}

    def start(self) -> None:
        self.kvm.start()
        assert self.kvm.meter is not None
        self.meters = {"bare": self.bare.meter, "kvm": self.kvm.meter, "exporter": CpuMeter(self.exporter.start())}
        self.start_collectd("paused")
        self.exporter.wait_ready()
        for _ in range(2):  # warm-up: connections, caches, first XML reads
            self.bare.cycle()
            self.kvm.cycle()
            self.exporter.scrape()

    def start_collectd(self, label: str) -> None:
        directory = os.path.join(self.workdir, f"collectd-{label}")
        os.makedirs(directory)
        collectd = Collectd(directory, "^" + re.escape(self.prefix), URI)
        self.collectds.append(collectd)
        self.meters["collectd"] = CpuMeter(collectd.start())
        collectd.wait_first_values()

    def stop_collectd(self) -> None:
        self.collectds[-1].stop()

    def sample_bare(self, s: Series) -> None:
        s.wall_s.append(self.bare.cycle())
        s.cpu_s.append(self.meters["bare"].mark() or 0.0)  # since the previous call: idle time included

    def sample_kvm(self, s: Series) -> None:
        wall, size = self.kvm.cycle()
        s.wall_s.append(wall)
        s.out_bytes.append(size)
        s.cpu_s.append(self.meters["kvm"].mark() or 0.0)  # since the previous batch: idle time included

    def sample_exporter(self, s: Series) -> None:
        wall, body = self.exporter.scrape()
        s.wall_s.append(wall)
        s.out_bytes.append(len(body))
        s.cpu_s.append(self.meters["exporter"].mark() or 0.0)

    def play(self, rounds: int, series: Dict[str, Series], full: bool) -> None:
        """Rounds of exactly 3 s on collectd's 1 s grid: bare call + kvm-telegraf | exporter | a new kvm-telegraf."""
        collectd, meters = self.collectds[-1], self.meters
        phase, burst = collectd_phase(meters["collectd"].pid)
        offset = (phase + burst + 0.05) % 1.0
        log(f"collectd reads at +{phase:.3f}s of each second ({burst * 1e3:.0f} ms); slots start at +{offset:.3f}s")
        for name in ("bare", "kvm", "exporter"):
            meters[name].mark()
        slot = int(time.time()) + 1 + offset
        for index in range(rounds + 1):
            sleep_until(slot)
            collectd_cpu, sent = meters["collectd"].mark(), collectd.drain()  # 3 s: three reads
            if collectd_cpu is not None:
                series["collectd"].cpu_s.append(collectd_cpu / 3)
                series["collectd"].out_bytes.append(sent // 3)
            if index == rounds:
                return
            pair = [("bare", self.sample_bare), ("kvm", self.sample_kvm)]
            before = (len(series["bare"].wall_s), len(series["kvm"].wall_s))
            for name, sample in pair if index % 2 == 0 else pair[::-1]:  # neither always goes first
                measure(series[name], sample)
                time.sleep(0.02)
            if (len(series["bare"].wall_s), len(series["kvm"].wall_s)) == (before[0] + 1, before[1] + 1):
                series["kvm"].paired_ratio.append(series["kvm"].wall_s[-1] / series["bare"].wall_s[-1])
            if full:
                sleep_until(slot + 1)
                measure(series["exporter"], self.sample_exporter)
                sleep_until(slot + 2)
                try:
                    self.start_s.append(start_to_first_batch(self.argv, self.kvm.lines_per_batch))
                except RuntimeError as exc:
                    log(f"start to first batch: {exc}")
            slot += 3

    def close(self) -> None:
        self.kvm.stop()
        for collectd in self.collectds:
            collectd.stop()
        self.exporter.stop()
        self.bare.close()


def paused_rounds(peers: PeerRounds, rounds: int) -> PeersResult:
    """The four contenders on the paused guests; then peak RSS and the coarse utime+stime cross-check."""
    peers.start()
    exporter_domains = peers.exporter.scrape()[1].count(b"\nlibvirt_domain_info_virtual_cpus{")
    paused = new_series("bare", "kvm", "collectd", "exporter")
    log(f"{rounds} rounds of the bare call, kvm-telegraf, collectd and the exporter")
    peers.play(rounds, paused, full=True)
    meters = peers.meters
    result = PeersResult(
        paused=paused,
        live=new_series("bare", "kvm", "collectd"),
        start_s=peers.start_s,
        rss_mib={name: procstat.peak_rss_mib(meters[name].pid) for name in ("bare", "kvm", "collectd", "exporter")},
        stat_mean_s={
            "bare": meters["bare"].stat_mean_s(),
            "kvm": meters["kvm"].stat_mean_s(),
            "collectd": meters["collectd"].stat_mean_s(3.0),
            "exporter": meters["exporter"].stat_mean_s(),
        },
        domains_on_host=peers.bare.domains_read,
        exporter_domains=exporter_domains,
        lines_per_batch=peers.kvm.lines_per_batch,
    )
    peers.stop_collectd()  # no read of collectd's during the parts that follow
    return result


def live_rounds(peers: PeerRounds, result: PeersResult, rounds: int, running: int) -> None:
    """The bare call, kvm-telegraf and a new collectd (whose device list then holds them) with guests running."""
    assert peers.kvm.driver.pid is not None
    peers.meters = {
        "bare": CpuMeter(peers.bare.proc.pid),
        "kvm": CpuMeter(peers.kvm.driver.pid),
        "exporter": peers.meters["exporter"],
    }
    peers.start_collectd("running")
    log(f"{rounds} rounds with {running} of the guests running")
    peers.play(rounds, result.live, full=False)
    result.running = running
