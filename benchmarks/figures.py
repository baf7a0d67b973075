"""The figures of one ``make bench`` run, and the maths on them: medians, paired ratios, verdicts, formats.

Every ratio is taken between figures of the same run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from benchmarks.agreement import Agreement
from benchmarks.host import PartLoad
from benchmarks.vs_peers import PeersResult
from benchmarks.vs_telegraf import TelegrafRun

STAGES = ("collect", "shape", "encode", "write")


@dataclass
class Results:
    machine: Dict[str, str]
    guests: int
    cycles: int
    load: List[PartLoad]
    filtered: bool = False  # whether kvm-telegraf ran with --domain in some part (other domains on the host)
    peers: Optional[PeersResult] = None
    same: Dict[str, Optional[Dict[str, Any]]] = field(default_factory=dict)  # label -> same_process.py's answer
    memory: Dict[str, Optional[Dict[str, Any]]] = field(default_factory=dict)  # rss, heap -> memory.py's answer
    telegraf: Dict[str, Optional[TelegrafRun]] = field(default_factory=dict)  # label -> the four Telegrafs
    agreement: Optional[Agreement] = None
    synthetic: List[Dict[str, Any]] = field(default_factory=list)  # groups off, vcpu, all
    scaling: List[Dict[str, Any]] = field(default_factory=list)  # 100 .. 3,000 domains
    callgrind_live: Optional[Dict[str, int]] = None
    callgrind_synthetic: Optional[Dict[str, int]] = None


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def paired_median(numerators: Sequence[float], denominators: Sequence[float]) -> Optional[float]:
    """The median of the per-round ratios (a pair shares the load of its moment)."""
    ratios = [a / b for a, b in zip(numerators, denominators) if b > 0]
    return statistics.median(ratios) if ratios else None


def median(values: Optional[Sequence[float]]) -> Optional[float]:
    return statistics.median(values) if values else None


def verdict(value: Optional[float], limit: float) -> str:
    if value is None:
        return "not measured"
    if value <= limit:
        return "met"
    if value < 1.5 * limit:
        return f"missed by {(value / limit - 1) * 100:.0f}%"
    return f"missed: {value / limit:.1f}x the limit"


def fmt_ms(seconds: Optional[float], digits: int = 2) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.{digits}f} ms"


def fmt_s(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def fmt_ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_share(part: Optional[float], whole: Optional[float]) -> str:
    share = ratio(part, whole)
    return "" if share is None else f" ({share * 100:.0f}%)"


def fmt_minstr(count: Optional[float]) -> str:
    return "n/a" if count is None else f"{count / 1e6:,.1f} M"


def difference(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def in_process(same: Optional[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Medians per cycle from same_process.py: bare, cycle, each stage, GC; and the cycle's ratio to bare."""
    if not same:
        return {}
    out: Dict[str, Optional[float]] = {
        "bare": median(same["bare"]["cpu_s"]),
        "cycle": median(same["cycle"]["cpu_s"]),
        "staged": median(same["staged"]["cpu_s"]),
        "ratio": paired_median(same["cycle"]["cpu_s"], same["bare"]["cpu_s"]),
        "latency_ratio": paired_median(same["cycle"]["wall_s"], same["bare"]["wall_s"]),
        "gc": statistics.mean(same["cycle"]["gc_s"] + same["staged"]["gc_s"]),
        "gc_runs": statistics.mean(same["cycle"]["gc_runs"] + same["staged"]["gc_runs"]),
    }
    for stage in STAGES:
        out[stage] = median(same["stages"][stage])
    out["print_floor"] = median(same.get("print_floor_s"))
    return out


def room_beyond_floor(total: float, ours: float, theirs: float, floor_process: float, limit: float) -> float:
    """CPU per gather our process may spend beyond the floor's process (the bare call, one write) for Telegraf +
    kvm-telegraf to stay within *limit* times Telegraf + inputs.libvirt, Telegraf's own side as measured."""
    return limit * theirs - (total - ours) - floor_process


def telegraf_ratio(run: Optional[TelegrafRun]) -> Optional[float]:
    return ratio(run.cpu_s["kvm-telegraf"], run.cpu_s["libvirt"]) if run else None


def floor_ratio(run: Optional[TelegrafRun]) -> Optional[float]:
    """Telegraf + the floor (the bare call and our recorded lines, nothing else) to Telegraf + inputs.libvirt."""
    return ratio(run.cpu_s["floor"], run.cpu_s["libvirt"]) if run and "floor" in run.cpu_s else None
