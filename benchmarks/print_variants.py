"""Whether how we print changes Telegraf's parse of our lines: one batch printed several ways, a Telegraf each.

    python -m benchmarks.print_variants [--domains 60] [--seconds 30] [--rounds 2]

Not part of ``make bench``, and no lab: the batch is the synthetic host's (recorded real guests, renamed;
benchmarks/synthetic.py), printed as kvm-telegraf prints it, then rewritten with the same points, and
replayed by ``replay_lines.py`` under one Telegraf per variant, all at once, each in a CPU-accounting
cgroup of its own (benchmarks/cgroup.py), their gathers spread over the 1 s interval. A variant's parse
cost is its cgroup's CPU per gather less the baseline's (a Telegraf with no input). The variants:

- ``as printed``: kvm-telegraf's batch (tags sorted by key, one timestamp on every line);
- ``upstream parser``: the same batch, ``influx_parser_type = "upstream"`` in the execd block;
- ``tags reversed``: every line's tags in reverse order (Telegraf sorts them again).

Line count and field types are the schema's, and nothing in a lab guest's names needs escaping.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from benchmarks.synthetic import Steady, steady_host
from benchmarks.under_telegraf import execd_input, start_setup

REPLAY = Path(__file__).resolve().parent / "replay_lines.py"
TELEGRAF = Path(__file__).resolve().parent.parent / ".cache" / "telegraf" / "v1.37.2" / "telegraf"


def tags_reversed(line: str) -> str:
    head, rest = line.split(" ", 1)  # bench names hold no escaped space
    measurement, *tags = head.split(",")
    return ",".join([measurement, *reversed(tags)]) + " " + rest


VARIANTS: Dict[str, Callable[[str], str]] = {
    "as printed": lambda line: line,
    "upstream parser": lambda line: line,
    "tags reversed": tags_reversed,
}


def rewrite(batch: str, variant: Callable[[str], str]) -> str:
    return "".join(variant(line) + "\n" for line in batch.splitlines())


def measure(domains: int, seconds: float, rounds: int, telegraf: Path) -> Dict[str, List[float]]:
    """Each variant's parse cost per gather (ms, less the baseline's), one figure per round."""
    batch = Steady(steady_host(domains), ()).batch()
    work = Path(tempfile.mkdtemp(prefix="kvm-telegraf-print-variants-"))
    try:
        blocks = {"baseline": ""}
        for index, (name, variant) in enumerate(VARIANTS.items()):
            path = work / f"batch-{index}.lp"
            path.write_text(rewrite(batch, variant))
            block = execd_input(["/usr/bin/python3", str(REPLAY), str(path)], offset_s=index / 5)
            blocks[name] = block + ('  influx_parser_type = "upstream"\n' if name == "upstream parser" else "")
        setups = {
            name: start_setup(name, telegraf, work / f"setup-{i}", 1.0, block, "vm_" if block else "", f"ktprint-{i}")
            for i, (name, block) in enumerate(blocks.items())
        }
        try:
            time.sleep(5)  # every execd child started and in its group
            for setup in setups.values():
                assert setup.group is not None
                setup.group.add(setup.pids())
            figures: Dict[str, List[float]] = {name: [] for name in VARIANTS}
            for _ in range(rounds):
                before = {name: setup.group.usage_ns() for name, setup in setups.items() if setup.group}
                time.sleep(seconds)
                after = {name: setup.group.usage_ns() for name, setup in setups.items() if setup.group}
                per_gather = {name: (after[name] - before[name]) / seconds / 1e6 for name in setups}
                for name in VARIANTS:
                    figures[name].append(per_gather[name] - per_gather["baseline"])
            return figures
        finally:
            for setup in setups.values():
                setup.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.print_variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--telegraf", type=Path, default=TELEGRAF)
    args = parser.parse_args(argv)
    figures = measure(args.domains, args.seconds, args.rounds, args.telegraf)
    head = (
        f"| Variant ({args.domains} synthetic domains) | Telegraf's parse and output, ms per gather | To as printed |"
    )
    print(head)
    print("|---|---|---|")
    reference = statistics.median(figures["as printed"])
    for name, values in figures.items():
        rounds = " / ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {statistics.median(values):.2f} ({rounds}) | {statistics.median(values) / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
