"""``make bench``: issue #26's targets, each a ratio measured side by side in one run, and the split of the cost.

Runs the parts below on ktbench-* lab guests (benchmarks/README.md has the method), then prints
the table and writes it to benchmarks/results.md:

1. Telegraf + kvm-telegraf against Telegraf + inputs.libvirt, on 4 running guests (vs_telegraf.py), then
   the same guests in one process (same_process.py);
2. the bare call, kvm-telegraf, collectd and the exporter on 20 paused guests (vs_peers.py);
3. in one process: the bare call, a cycle, its stages and the garbage collector (same_process.py);
4. what the memory above the bare process is (memory.py);
5. Telegraf + kvm-telegraf against Telegraf + inputs.libvirt on the 20 paused guests;
6. instructions per stage on the live guests (callgrind.py);
7. with some guests running: the data agreement of the two inputs, and the peers again;
8. the synthetic host: shape + encode at 1,000 domains, memory kept, 100 to 3,000 domains, callgrind;
9. with --scale: the Telegraf comparison and the in-process rounds on 60 paused guests.

    .venv/bin/python -m benchmarks.bench [--guests 20] [--cycles 30] [--running 5] [--scale] [--keep-guests]
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from benchmarks import callgrind, synthetic
from benchmarks.agreement import Agreement, agreement
from benchmarks.contenders import URI
from benchmarks.figures import Results
from benchmarks.host import PREFIX, REPO, LoadLog, ensure_peers, install_as_documented, lab, log, machine_info
from benchmarks.table import render
from benchmarks.under_telegraf import execd_input, libvirt_input, read_capture, start_setup
from benchmarks.vs_peers import PeerRounds, live_rounds, paused_rounds
from benchmarks.vs_telegraf import compare
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from tests.harness.telegraf import find_telegraf

DEFAULT_RESULTS = os.path.join(REPO, "benchmarks", "results.md")
SMALL_HOST = 4  # running guests of the small host
SCALE_GUESTS = 60  # paused guests of --scale
AGREEMENT_INTERVAL_S = 3.0
AGREEMENT_GATHERS = 5


def telegraf_interval_s(guests: int) -> float:
    """Long enough for the four Telegrafs' gathers, spread over it, not to meet: 2 s up to 20 guests."""
    return 2.0 if guests <= 20 else 4.0


def in_venv(workdir: str, script: str, args: Sequence[str], timeout: float) -> Any:
    """A benchmarks/ script run with the installed kvm-telegraf's Python; its JSON answer."""
    python = os.path.join(workdir, "venv", "bin", "python")
    done = subprocess.run(
        [python, os.path.join(REPO, "benchmarks", script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def attempt(what: str, action: Callable[[], Any]) -> Any:
    """A part whose failure costs its figures, not the run (it is said in the table as 'not measured')."""
    try:
        return action()
    except (subprocess.SubprocessError, RuntimeError, ValueError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        log(f"{what} failed: {type(exc).__name__}: {exc} {detail[-600:]}")
        return None


def data_agreement(binary: Path, workdir: Path, names: List[str], argv: Sequence[str]) -> Agreement:
    """One Telegraf with both inputs, inputs.libvirt half an interval after ours, into one capture."""
    block = execd_input(argv) + libvirt_input(names, offset_s=AGREEMENT_INTERVAL_S / 2)
    setup = start_setup("both", binary, workdir / "telegraf-both", AGREEMENT_INTERVAL_S, block, "libvirt_")
    try:
        if not setup.wait_first_gather():
            raise RuntimeError(f"Telegraf with both inputs wrote nothing; log: {setup.telegraf.log_text()}")
        time.sleep(AGREEMENT_GATHERS * AGREEMENT_INTERVAL_S)
    finally:
        setup.stop()
    return agreement(read_capture(setup.capture), AGREEMENT_INTERVAL_S)


def names_of(count: int) -> List[str]:
    return [f"{PREFIX}{index:02d}" for index in range(1, count + 1)]


def as_operators_run(command: str, glob: str, uri: str = URI) -> List[str]:
    """kvm-telegraf's command line for a part: as an operator's default (no ``--domain``: one ``getAllDomainStats``)
    when every domain on the host is one of the bench's, else with ``--domain GLOB`` to keep other labs' guests out
    (then each cycle also lists the domains: docs/performance.md, "Reading only the chosen domains"). Telegraf's
    ``inputs.libvirt`` lists the domains on every gather either way."""
    listed = subprocess.run(
        ["virsh", "-q", "-c", uri, "list", "--all", "--name"], check=True, capture_output=True, text=True
    ).stdout.split()
    if all(fnmatch.fnmatchcase(name, glob) for name in listed):
        return [command]
    log(f"other domains on the host: kvm-telegraf runs with --domain {glob}")
    return [command, "--domain", glob]


def run(args: argparse.Namespace, workdir: str, telegraf: Path) -> Results:
    glob, work = f"{PREFIX}*", Path(workdir)
    load = LoadLog()
    load.begin("installing this checkout into a fresh venv, as README's Install section does")
    lab("daemons")  # libvirtd may have been stopped by another lab's fault tests
    command = install_as_documented(workdir)
    machine = machine_info()
    load.end()
    results = Results(machine=machine, guests=args.guests, cycles=args.cycles, load=load.parts)
    chunks = max(3, args.cycles // 5)

    load.begin(f"Telegraf side by side, {SMALL_HOST} running guests ({chunks * 10} s), then in one process")
    lab("down")  # a small host: only these guests of the bench's (a run with --keep-guests left more)
    lab("up", str(SMALL_HOST))
    argv = as_operators_run(command, glob)
    results.filtered = "--domain" in argv
    results.telegraf[f"{SMALL_HOST} running"] = attempt(
        "Telegraf comparison",
        lambda: compare(telegraf, work, f"{SMALL_HOST} running", names_of(SMALL_HOST), argv, 2.0, chunks),
    )
    # The same guests in one process: on a small host the cycle's fixed cost is most of our process's share
    results.same[f"{SMALL_HOST} running"] = attempt(
        "same-process rounds", lambda: in_venv(workdir, "same_process.py", [URI, glob, "15"], 15 * 30)
    )
    load.end()

    load.begin(f"bringing up {args.guests} guests, then pausing them")
    lab("up", str(args.guests))
    lab("pause")
    argv = as_operators_run(command, glob)
    results.filtered = results.filtered or "--domain" in argv
    load.end()

    load.begin(f"the bare call, kvm-telegraf, collectd and the exporter: {args.cycles} rounds of 3 s")
    peers = PeerRounds(workdir, glob, argv, PREFIX)
    try:
        results.peers = paused_rounds(peers, args.cycles)
        load.end()

        load.begin(f"in one process: the bare call, a cycle and its stages, {args.cycles} rounds")
        results.same[f"{args.guests} paused"] = attempt(
            "same-process rounds",
            lambda: in_venv(workdir, "same_process.py", [URI, glob, str(args.cycles)], args.cycles * 30),
        )
        load.end()

        load.begin("memory, step by step from the bare process to a running pipeline")
        for mode in ("rss", "heap"):
            results.memory[mode] = attempt(
                f"memory ({mode})",
                lambda mode=mode: in_venv(workdir, "memory.py", [URI, glob, "10", str(DEFAULT_STATS), mode], 300),
            )
        load.end()

        interval = telegraf_interval_s(args.guests)
        load.begin(f"Telegraf side by side, {args.guests} paused guests ({chunks * 10} s)")
        results.telegraf[f"{args.guests} paused"] = attempt(
            "Telegraf comparison",
            lambda: compare(telegraf, work, f"{args.guests} paused", names_of(args.guests), argv, interval, chunks),
        )
        load.end()

        load.begin("instructions per stage on the live guests (callgrind)")
        script = os.path.join(REPO, "benchmarks", "same_process.py")
        python = os.path.join(workdir, "venv", "bin", "python")
        results.callgrind_live = attempt(
            "callgrind, live", lambda: callgrind.count([python, script, URI, glob, "3", "--callgrind"], work)
        )
        load.end()

        if args.running:
            load.begin(f"{args.running} guests running: the data agreement, then the peers again")
            for name in names_of(args.running):
                subprocess.run(["virsh", "-q", "-c", URI, "resume", name], check=True, stdout=subprocess.DEVNULL)
            results.agreement = attempt(
                "data agreement", lambda: data_agreement(telegraf, work, names_of(args.guests), argv)
            )
            live_rounds(peers, results.peers, args.cycles, args.running)
            load.end()
        results.peers.rss_mib["kvm"] = peers.kvm.peak_rss_mib()
    finally:
        peers.close()

    if args.scale:
        load.begin(f"--scale: {SCALE_GUESTS} paused guests")
        lab("up", str(SCALE_GUESTS))
        lab("pause")
        argv = as_operators_run(command, glob)
        results.filtered = results.filtered or "--domain" in argv
        label = f"{SCALE_GUESTS} paused"
        results.telegraf[label] = attempt(
            "Telegraf comparison",
            lambda: compare(
                telegraf, work, label, names_of(SCALE_GUESTS), argv, telegraf_interval_s(SCALE_GUESTS), chunks
            ),
        )
        results.same[label] = attempt(
            "same-process rounds", lambda: in_venv(workdir, "same_process.py", [URI, glob, "15"], 15 * 60)
        )
        load.end()

    load.begin("the synthetic host: 1,000 domains, groups off, vcpu and all; 100 to 3,000 domains; callgrind")
    repeats = max(args.cycles, 15)
    results.synthetic = [
        synthetic.time_shape_encode(1000, repeats, groups, vcpus) for _, groups, vcpus in synthetic.SETUPS
    ]
    results.scaling = synthetic.scaling()
    results.callgrind_synthetic = attempt(
        "callgrind, synthetic",
        lambda: callgrind.count([sys.executable, "-m", "benchmarks.synthetic", "--stages", "2"], Path(REPO)),
    )
    load.end()
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=20, help="paused lab guests to measure (default 20)")
    parser.add_argument("--cycles", type=int, default=30, help="rounds of each part, at least 15 (default 30)")
    parser.add_argument(
        "--running", type=int, default=5, help="guests resumed for the data agreement and the peers, 0 for none"
    )
    parser.add_argument("--scale", action="store_true", help=f"also {SCALE_GUESTS} paused guests (about 10 min more)")
    parser.add_argument(
        "--keep-guests",
        action="store_true",
        default=os.environ.get("KVM_TELEGRAF_BENCH_KEEP") == "1",
        help=f"leave the {PREFIX}* guests defined (paused) at the end; env KVM_TELEGRAF_BENCH_KEEP=1",
    )
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="results file (default benchmarks/results.md)")
    args = parser.parse_args(argv)
    if args.cycles < 15:
        parser.error("--cycles must be at least 15")
    if args.guests < SMALL_HOST:
        parser.error(f"--guests must be at least {SMALL_HOST}")
    if not 0 <= args.running <= args.guests:
        parser.error("--running must be between 0 and --guests")
    telegraf = find_telegraf()
    if telegraf is None:
        parser.error("Telegraf is not built: make telegraf (make bench does it)")
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))  # so the cleanup below runs
    ensure_peers()
    workdir = tempfile.mkdtemp(prefix="kvm-telegraf-bench-")
    try:
        results = run(args, workdir, telegraf)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.keep_guests:
            log(f"keeping the {PREFIX}* guests paused; remove: KVM_TELEGRAF_LAB_PREFIX={PREFIX} tests/lab/lab.py down")
            with contextlib.suppress(subprocess.CalledProcessError):
                lab("pause")
        else:
            lab("down")
    table = render(results)
    print(table)
    with open(args.results, "w", encoding="utf-8") as handle:
        handle.write("# Benchmark results\n\nWritten by `make bench`; the method is in benchmarks/README.md.\n\n")
        handle.write(table)
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
