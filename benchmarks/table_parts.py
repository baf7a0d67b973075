"""The tables after the targets: the split of the cost, part by part, and the run's parts with their load.

Pure: the figures in (figures.Results), Markdown lines out; a part that failed says so.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from benchmarks.agreement import Agreement
from benchmarks.figures import (
    Results,
    difference,
    floor_ratio,
    fmt_minstr,
    fmt_ms,
    fmt_ratio,
    fmt_share,
    in_process,
    ratio,
    room_beyond_floor,
    telegraf_ratio,
)
from benchmarks.host import PartLoad
from benchmarks.vs_telegraf import TelegrafRun, split


def telegraf_split(r: Results, limits: Dict[str, float]) -> List[str]:
    """The parts per gather; *limits*: each label's target, for the room it leaves beyond the floor."""
    runs = {label: run for label, run in r.telegraf.items() if run is not None}
    if not runs:
        return ["Telegraf side by side: not measured (see the bench's log)."]
    labels = list(runs)
    parts = {label: split(run) for label, run in runs.items()}

    def row(name: str, value: Any) -> str:
        return f"| {name} | " + " | ".join(value(label) for label in labels) + " |"

    def ms_share(attribute: str) -> Any:
        return lambda label: (
            fmt_ms(getattr(parts[label], attribute)) + fmt_share(getattr(parts[label], attribute), parts[label].total)
        )

    same = {label: in_process(r.same.get(label)) for label in labels}

    def room(label: str) -> float:
        p = parts[label]
        return room_beyond_floor(p.total, p.ours, p.theirs_total, p.floor_process, limits[label])

    return [
        "| Per gather | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        row("Telegraf + kvm-telegraf (its cgroup)", lambda label: fmt_ms(parts[label].total)),
        row("  Telegraf's baseline: no input but `inputs.internal`", ms_share("baseline")),
        row("  Telegraf's parse and output of our lines (`replay`, less the replayer)", ms_share("parse")),
        row("  the rest of Telegraf's side (the tick, the pipe)", ms_share("execd_rest")),
        row("  kvm-telegraf's process (schedstat)", ms_share("ours")),
        row(
            "    of which a cycle in one process (the in-process table)",
            lambda label: fmt_ms(same[label].get("cycle")) if same[label] else "n/a",
        ),
        row("Telegraf + `inputs.libvirt` (its cgroup)", lambda label: fmt_ms(parts[label].theirs_total)),
        row("  its gather and output, less the baseline", lambda label: fmt_ms(parts[label].theirs_gather)),
        row("Ratio, kvm-telegraf's setup to inputs.libvirt's", lambda label: fmt_ratio(telegraf_ratio(runs[label]))),
        row(
            "Telegraf + the floor: the bare call and our recorded lines, nothing else (`floor`)",
            lambda label: fmt_ms(parts[label].floor),
        ),
        row("  of which the floor's process (schedstat)", lambda label: fmt_ms(parts[label].floor_process)),
        row("Ratio, the floor's setup to inputs.libvirt's", lambda label: fmt_ratio(floor_ratio(runs[label]))),
        row(
            "The target's room for our process beyond the floor's (collect, shape, encode, the cycle's fixed cost)",
            lambda label: f"{fmt_ms(room(label), 3)} at {limits[label]:.1f}x" if label in limits else "no target",
        ),
        row(
            "  printing the batch's values, nothing else (in one process: `PrintFloor`)",
            lambda label: fmt_ms(same[label].get("print_floor"), 3) if same[label] else "n/a",
        ),
        row("The replayer's own CPU (subtracted above)", lambda label: fmt_ms(runs[label].child_s["replay"], 3)),
        row(
            "Lines / fields per gather, ours; theirs",
            lambda label: (
                f"{runs[label].lines.get('kvm-telegraf', 0):.0f} / {runs[label].fields.get('kvm-telegraf', 0):.0f}"
                f"; {runs[label].lines.get('libvirt', 0):.0f} / {runs[label].fields.get('libvirt', 0):.0f}"
            ),
        ),
        row(
            "Peak RSS, ours (both processes); theirs",
            lambda label: f"{runs[label].rss_mib['kvm-telegraf']:.1f}; {runs[label].rss_mib['libvirt']:.1f} MiB",
        ),
        row("Interval; gathers counted", lambda label: f"{runs[label].interval_s:g} s; {runs[label].gathers}"),
        row(
            "`E!`/`W!` lines in Telegraf's log, ours; theirs (their text below)",
            lambda label: (
                f"{len(runs[label].log_problems['kvm-telegraf'])}; {len(runs[label].log_problems['libvirt'])}"
            ),
        ),
        *log_problems(runs),
    ]


LOGGED_MAX, LOGGED_CHARS = 5, 240  # of each part's E!/W! lines, the first few, clipped


def log_problems(runs: Dict[str, TelegrafRun]) -> List[str]:
    """The text of each part's E!/W! lines from ours and inputs.libvirt's Telegraf, so a run's count explains
    itself (the 60-paused part of one run counted one from our block and kept nothing else)."""
    out = []
    for label, run in runs.items():
        for name in ("kvm-telegraf", "libvirt"):
            logged = run.log_problems.get(name, [])
            out += [f"- {label}, {name}: `{line[:LOGGED_CHARS]}`" for line in logged[:LOGGED_MAX]]
            if len(logged) > LOGGED_MAX:
                out.append(f"- {label}, {name}: {len(logged) - LOGGED_MAX} more")
    return [""] + out if out else []


def process_split(r: Results) -> List[str]:
    labels = [label for label, same in r.same.items() if same]
    if not labels:
        return ["In one process: not measured (see the bench's log)."]
    figures = {label: in_process(r.same[label]) for label in labels}
    cg = r.callgrind_live or {}

    def row(name: str, key: str, cg_key: str = "") -> str:
        cells = [fmt_ms(figures[label].get(key), 3) + fmt_share(figures[label].get(key), figures[label]["staged"])
                 for label in labels]  # fmt: skip
        return f"| {name} | " + " | ".join(cells) + f" | {fmt_minstr(cg.get(cg_key)) if cg_key else ''} |"

    beyond = {label: difference(figures[label].get("collect"), figures[label].get("bare")) for label in labels}
    domains = " | ".join(
        f"{r.same[label]['domains']['read']} read, {r.same[label]['domains']['kept_by_bare']} kept" for label in labels
    )
    return [
        "| CPU per cycle, medians | " + " | ".join(labels) + " | Instructions (callgrind, live) |",
        "|---|" + "---|" * len(labels) + "---|",
        row("bare `getAllDomainStats` + the name filter", "bare", "bare"),
        row("`Pipeline.cycle` (what runs)", "cycle"),
        row("the same, stage by stage (100%)", "staged"),
        row("  collect", "collect", "collect"),
        "|   of which beyond the bare call | "
        + " | ".join(fmt_ms(beyond[label], 3) for label in labels)
        + f" | {fmt_minstr(difference(cg.get('collect'), cg.get('bare')))} |",
        row("  shape", "shape", "shape"),
        row("  encode", "encode", "encode"),
        row("  write (to /dev/null)", "write", "write"),
        "| garbage collector, in the stages above (runs per cycle) | "
        + " | ".join(
            fmt_ms(figures[label]["gc"], 3)
            + fmt_share(figures[label]["gc"], figures[label]["staged"])
            + f", {figures[label]['gc_runs']:.1f} runs"
            for label in labels
        )
        + " | |",
        "| Domains | " + domains + " | |",
    ]


def memory_split(r: Results) -> List[str]:
    rss = r.memory.get("rss")
    if not rss:
        return ["Memory: not measured (see the bench's log)."]
    out = [
        "| Step | RSS | anonymous | file-backed | RSS added | modules | threads |",
        "|---|---|---|---|---|---|---|",
    ]
    previous = None
    for step in rss["steps"]:
        added = "" if previous is None else f"{(step['VmRSS'] - previous) / 1024:+.1f} MiB"
        out.append(
            f"| {step['step']} | {step['VmRSS'] / 1024:.1f} MiB | {step['RssAnon'] / 1024:.1f} MiB "
            f"| {step['RssFile'] / 1024:.1f} MiB | {added} | {step['modules']} | {step['Threads']} |"
        )
        previous = step["VmRSS"]
    last = rss["steps"][-1]
    out += ["", f"Peak RSS (VmHWM) at the end of these steps: {last['VmHWM'] / 1024:.1f} MiB."]
    heap = (r.memory.get("heap") or {}).get("heap_by_package_kib")
    if heap:
        out += [
            "",
            "Python heap added after the bare process's steps, by package (tracemalloc, a second run): "
            + ", ".join(f"{name} {kib:,} KiB" for name, kib in heap)
            + ".",
        ]
    return out


def synthetic_split(r: Results) -> List[str]:
    cg = r.callgrind_synthetic or {}
    out = [
        "| `--collect` | vCPUs | Lines | Shape + encode per domain | shape | encode | bare key=value text "
        "| garbage collector | KiB kept per domain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r.synthetic:
        encode = s["per_domain_us"] - s["shape_per_domain_us"]
        out.append(
            f"| {s['groups']} | {s['vcpus'] or 'as recorded'} | {s['lines']:,} | {s['per_domain_us']:.1f} us "
            f"| {s['shape_per_domain_us']:.1f} us | {encode:.1f} us | {s['floor_per_domain_us']:.1f} us "
            f"| {s['gc_share'] * 100:.0f}%, {s['gc_runs']:.0f} runs | {s['kept_per_domain_kib']:.1f} |"
        )
    if cg:
        out += [
            "",
            f"Instructions per batch, 1,000 domains, groups off (callgrind): shape {fmt_minstr(cg.get('shape'))}, "
            f"encode {fmt_minstr(cg.get('encode'))}, write {fmt_minstr(cg.get('write'))}.",
        ]
    return out


def scaling_split(r: Results) -> List[str]:
    out = ["| Synthetic domains | " + " | ".join(f"{s['domains']:,}" for s in r.scaling) + " |"]
    out += ["|---|" + "---|" * len(r.scaling)]
    out += ["| Shape + encode per domain | " + " | ".join(f"{s['per_domain_us']:.1f} us" for s in r.scaling) + " |"]
    runs = {label: run for label, run in r.telegraf.items() if run is not None}
    if runs:
        out += [
            "",
            "| Lab guests | Telegraf + kvm-telegraf per gather | per guest | kvm-telegraf's process | per guest "
            "| Telegraf + `inputs.libvirt` | per guest | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, run in runs.items():
            guests = int(label.split()[0])
            parts = split(run)
            out.append(
                f"| {label} | {fmt_ms(parts.total)} | {fmt_ms(parts.total / guests, 3)} | {fmt_ms(parts.ours)} "
                f"| {fmt_ms(parts.ours / guests, 3)} | {fmt_ms(parts.theirs_total)} "
                f"| {fmt_ms(parts.theirs_total / guests, 3)} | {fmt_ratio(telegraf_ratio(run))} |"
            )
    return out


def peers_table(r: Results) -> List[str]:
    p = r.peers
    if p is None:
        return ["Peers: not measured (see the bench's log)."]
    s = p.paused
    out = [
        "| Process | Latency | to the bare call's | CPU per cycle | utime+stime | Peak RSS |",
        "|---|---|---|---|---|---|",
        f"| bare `getAllDomainStats` (floor) | {fmt_ms(s['bare'].median('wall_s'), 1)} | 1.00x "
        f"| {fmt_ms(s['bare'].median('cpu_s'))} | {fmt_ms(p.stat_mean_s['bare'])} | {p.rss_mib['bare']:.1f} MiB |",
        f"| kvm-telegraf, {p.lines_per_batch} lines | {fmt_ms(s['kvm'].median('wall_s'), 1)} "
        f"| {fmt_ratio(s['kvm'].median('paired_ratio'))} | {fmt_ms(s['kvm'].median('cpu_s'))} "
        f"| {fmt_ms(p.stat_mean_s['kvm'])} | {p.rss_mib['kvm']:.1f} MiB |",
        f"| collectd `virt`, Interval 1 s | own timer | | {fmt_ms(s['collectd'].median('cpu_s'))} "
        f"| {fmt_ms(p.stat_mean_s['collectd'])} | {p.rss_mib['collectd']:.1f} MiB |",
        f"| prometheus-libvirt-exporter, per scrape ({p.exporter_domains} domains) "
        f"| {fmt_ms(s['exporter'].median('wall_s'), 1)} "
        f"| {fmt_ratio(ratio(s['exporter'].median('wall_s'), s['bare'].median('wall_s')))} "
        f"| {fmt_ms(s['exporter'].median('cpu_s'))} | {fmt_ms(p.stat_mean_s['exporter'])} "
        f"| {p.rss_mib['exporter']:.1f} MiB |",
    ]
    if p.running:
        live = p.live
        out += [
            "",
            f"With {p.running} of the guests running (a new collectd, whose device list holds them): bare call "
            f"{fmt_ms(live['bare'].median('cpu_s'))}, kvm-telegraf {fmt_ms(live['kvm'].median('cpu_s'))} "
            f"(latency {fmt_ratio(live['kvm'].median('paired_ratio'))} the bare call's), collectd "
            f"{fmt_ms(live['collectd'].median('cpu_s'))} of CPU per cycle; kvm-telegraf to collectd: "
            f"{fmt_ratio(ratio(live['kvm'].median('cpu_s'), live['collectd'].median('cpu_s')))}.",
        ]
    failures = [
        f"{name}: {len(series.failures)} failed cycle(s), e.g. {series.failures[0]}"
        for group in (p.paused, p.live)
        for name, series in group.items()
        if series.failures
    ]
    if failures:
        out += ["", "Failed cycles (left out of the medians): " + "; ".join(failures) + "."]
    return out


def agreement_text(a: Optional[Agreement], running: int) -> List[str]:
    if a is None:
        return ["Data agreement: not measured (see the bench's log)."]
    misses = f" Outside even those: {'; '.join(a.misses[:5])}." if a.misses else ""
    return [
        f"Data agreement (one Telegraf with both inputs, `inputs.libvirt` half an interval after ours, {running} "
        f"guests running): of {a.counters} of their counters, {a.bracketed} sit between our two readings around "
        f"them and {a.one_further} more between our readings one further out; {len(a.misses)} outside.{misses} "
        f"Of {a.gauges} gauges, {a.gauges_equal} equal one of our two readings; {a.unmatched} values of the first "
        "and last gathers had no reading of ours on one side.",
    ]


def load_table(parts: List[PartLoad]) -> List[str]:
    total = sum(part.seconds for part in parts)
    return [
        "| Part of the run | Took | Both cores busy (every process) | Load average at its end |",
        "|---|---|---|---|",
        *(f"| {p.part} | {p.seconds:.0f} s | {p.busy * 100:.0f}% | {p.loadavg:.2f} |" for p in parts),
        f"| all | {total / 60:.1f} min | | |",
    ]
