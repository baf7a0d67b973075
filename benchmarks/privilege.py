"""A long run of kvm-telegraf under the call audit: every libvirt call it makes, with its connection's mode.

The process runs in this interpreter, as the installed command would, with libvirt's two open functions
wrapped (tests/harness/audit.py: the real connections, each call recorded and passed through). It collects
on its own timer (``--interval``), its batches go to a file, and after *seconds* it gets SIGTERM, as
Telegraf stops it; then the figures: connections opened per mode, calls per mode and method, the calls that
are not reads (none expected), and the modes the statistics were read in (read-only only).

    .venv/bin/python -m benchmarks.privilege --seconds 600 --out /tmp/audit.json -- \\
        --read-write --collect all --collect guest --interval 10s --guest-refresh 10s --domain 'ktga-*'

It needs guests with an agent (``tests/lab/lab.py up 2 --variant agent``) and root, like the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Sequence

import libvirt

from kvm_telegraf.cli import main as kvm_telegraf
from tests.harness.audit import AGENT_CALLS, Audit


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--out", default="", help="write the figures here as JSON too")
    parser.add_argument("--batches", default=os.devnull, help="where the batches go (default: nowhere)")
    parser.add_argument("options", nargs="+", help="kvm-telegraf's own options, after --")
    args = parser.parse_args(argv)
    audit = Audit()
    restore = audit.install(libvirt)
    stdout = os.dup(1)
    with open(args.batches, "wb") as batches:
        os.dup2(batches.fileno(), 1)
    timer = threading.Timer(args.seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    figures_exit: object = None
    try:
        kvm_telegraf.main(list(args.options), prog_name="kvm-telegraf")
    except SystemExit as exc:  # SIGTERM, as Telegraf stops it: the end of the run
        figures_exit = exc.code
    finally:
        timer.cancel()
        restore()
        os.dup2(stdout, 1)
    figures = audit.summary()
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["exit_code"] = figures_exit
    figures["options"] = list(args.options)
    read_write = {method for _, _, method in audit.read_write_calls()}
    figures["read_write_methods"] = sorted(read_write)
    figures["only_reads"] = not figures["not_reads"]
    figures["statistics_read_only"] = figures["stats_modes"] == ["ro"]
    figures["read_write_only_agent_calls"] = read_write <= AGENT_CALLS
    text = json.dumps(figures, indent=1, sort_keys=True)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    checks = ("only_reads", "statistics_read_only", "read_write_only_agent_calls")
    return 0 if all(figures[check] for check in checks) and figures_exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
