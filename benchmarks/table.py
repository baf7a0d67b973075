"""The tables of one ``make bench`` run: issue #26's targets first, then the split of the cost (table_parts.py).

Pure: the figures in, Markdown out. A part that failed shows as 'n/a' and its target as 'not measured'.
"""

from __future__ import annotations

from typing import List, Optional

from benchmarks.figures import (
    Results,
    floor_ratio,
    fmt_ms,
    fmt_ratio,
    fmt_s,
    in_process,
    median,
    telegraf_ratio,
    verdict,
)
from benchmarks.table_parts import (
    agreement_text,
    load_table,
    memory_split,
    peers_table,
    process_split,
    scaling_split,
    synthetic_split,
    telegraf_split,
)
from benchmarks.vs_telegraf import TelegrafRun, spread

# Issue #26's targets.
TELEGRAF_SMALL_MAX = 1.0  # Telegraf + kvm-telegraf to Telegraf + inputs.libvirt, 4 running guests
TELEGRAF_PAUSED_MAX = 0.8  # the same, 20 paused guests
CPU_BARE_RATIO_MAX = 2.0  # CPU per cycle in one process to the bare call's client CPU
PEAK_RSS_MIB_MAX = 30.0
SHAPE_ENCODE_US_MAX = 25.0
KEPT_KIB_MAX = 4.5 + 2.0  # the issue: no more than +2 KiB kept per domain over the 4.5 KiB of when it was filed
LATENCY_RATIO_MAX = 1.05
START_S_MAX = 0.5
STAGES = ("collect", "shape", "encode", "write")


def targets(r: Results) -> List[str]:
    p, small, paused = r.peers, r.telegraf.get("4 running"), r.telegraf.get(f"{r.guests} paused")
    same = in_process(r.same.get(f"{r.guests} paused"))
    syn = r.synthetic[0] if r.synthetic else None
    rss = p.rss_mib.get("kvm") if p else None
    latency = median(p.paused["kvm"].paired_ratio) if p else None
    start = median(p.start_s) if p else None

    def telegraf_row(run: Optional[TelegrafRun], label: str, limit: float) -> str:
        value, floor = telegraf_ratio(run), floor_ratio(run)
        detail = (
            f"{fmt_ratio(value)} ({fmt_ms(run.cpu_s['kvm-telegraf'])} / {fmt_ms(run.cpu_s['libvirt'])}; "
            f"per {run.gathers // max(len(run.chunk_ratios), 1)}-gather chunk: {spread(run.chunk_ratios)}); "
            f"floor {fmt_ratio(floor)}"
            if run
            else "n/a"
        )
        reachable = "" if floor is None or floor <= limit else "; the floor is over the target"
        return (
            f"| Telegraf + kvm-telegraf to Telegraf + `inputs.libvirt`, CPU per gather, {label} | {detail} "
            f"| <= {limit:.1f}x | {verdict(value, limit)}{reachable} |"
        )

    return [
        "| Measure | Measured | Target | |",
        "|---|---|---|---|",
        telegraf_row(small, "4 running guests", TELEGRAF_SMALL_MAX),
        telegraf_row(paused, f"{r.guests} paused guests", TELEGRAF_PAUSED_MAX),
        f"| CPU per cycle in one process, to the bare call's client CPU | {fmt_ratio(same.get('ratio'))} "
        f"({fmt_ms(same.get('cycle'))} / {fmt_ms(same.get('bare'))}) | <= {CPU_BARE_RATIO_MAX:.0f}x "
        f"| {verdict(same.get('ratio'), CPU_BARE_RATIO_MAX)} |",
        f"| Peak RSS | {'n/a' if rss is None else f'{rss:.1f} MiB'} "
        f"(bare process: {p.rss_mib['bare']:.1f} MiB) | <= {PEAK_RSS_MIB_MAX:.0f} MiB "
        f"| {verdict(rss, PEAK_RSS_MIB_MAX)} |"
        if p
        else f"| Peak RSS | n/a | <= {PEAK_RSS_MIB_MAX:.0f} MiB | not measured |",
        f"| Shape + encode, 1,000 synthetic domains | {syn['per_domain_us']:.1f} us per domain "
        f"| <= {SHAPE_ENCODE_US_MAX:.0f} us | {verdict(syn['per_domain_us'], SHAPE_ENCODE_US_MAX)} |"
        if syn
        else "| Shape + encode, 1,000 synthetic domains | n/a | | not measured |",
        f"| Memory kept per domain (tracemalloc), the same host | {syn['kept_per_domain_kib']:.1f} KiB "
        f"| <= {KEPT_KIB_MAX:.1f} KiB | {verdict(syn['kept_per_domain_kib'], KEPT_KIB_MAX)} |"
        if syn
        else "| Memory kept per domain | n/a | | not measured |",
        f"| Latency, newline to last line, to the bare call's | {fmt_ratio(latency)} "
        f"| <= {LATENCY_RATIO_MAX:.2f}x | {verdict(latency, LATENCY_RATIO_MAX)} |",
        f"| Start to first batch | {fmt_s(start)} | <= {START_S_MAX:.1f} s | {verdict(start, START_S_MAX)} |",
    ]


def render(r: Results) -> str:
    m = r.machine
    domains = r.peers.domains_on_host if r.peers else "n/a"
    sections = [
        [
            f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, libvirt {m['libvirt']}, "
            f"QEMU {m['qemu']}, Python {m['python']}, Telegraf {m['telegraf']}.",
            f"Run: {m['date']}; {r.guests} paused lab guests among {domains} domains on the host (other labs' too); "
            f"{r.cycles} rounds per part. The machine's load during each part is in the last table.",
            "kvm-telegraf ran with `--domain` in a part (other domains on the host): its cycles listed the domains."
            if r.filtered
            else "kvm-telegraf ran as an operator's default, no `--domain`: the host held only the bench's guests.",
        ],
        targets(r),
        ["### Telegraf + kvm-telegraf per gather, in parts (five Telegrafs at once, a cgroup each)"],
        telegraf_split(r, {"4 running": TELEGRAF_SMALL_MAX, f"{r.guests} paused": TELEGRAF_PAUSED_MAX}),
        ["### Our process per cycle, in one process (`same_process.py`, `time.process_time_ns()`)"],
        process_split(r),
        ["### Resident memory, from a bare interpreter to a running pipeline (`memory.py`)"],
        memory_split(r),
        ["### Shape + encode on the synthetic host (`synthetic.py`, CPU time, medians)"],
        synthetic_split(r),
        ["### How the cost grows with domains"],
        scaling_split(r),
        ["### Beside collectd and the Prometheus exporter (`vs_peers.py`, 20 paused guests)"],
        peers_table(r),
        agreement_text(r.agreement, r.peers.running if r.peers else 0),
        ["### Parts of the run"],
        load_table(r.load),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
