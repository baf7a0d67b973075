"""What kvm-telegraf's resident memory above a bare Python process holding the same connection is made of.

``make bench`` runs this file with the Python of the kvm-telegraf it installed for the bench:

    python memory.py URI GLOB CYCLES STATS_GROUPS rss|heap

It goes step by step from a bare interpreter to a running pipeline, the way the process gets
there, and after each step reads its own ``/proc/self/status`` (RSS, split into anonymous and
file-backed pages; the peak; threads), how many modules are loaded, and what tracemalloc counts
on the Python heap (``heap``: tracemalloc on, which costs resident memory of its own, so ``rss``
is a second run without it). The steps: the interpreter; ``import libvirt``; the read-only
connection and one bulk call (the bare process); click; the rest of the command line's imports
(logging, the options); the XML parser; the pipeline's imports (collect, shape, encode, events);
the pipeline built (the event loop thread); the first cycle (the workers, the XML cache); more
cycles. Prints one JSON object. Only the kvm_telegraf package and libvirt are imported: it runs
with the kvm-telegraf installed for the bench.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import tracemalloc
from typing import Callable, Dict, List

KEYS = ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")


def status() -> Dict[str, int]:
    found = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in KEYS:
                found[key] = int(value.split()[0])
    return found


def package_of(path: str) -> str:
    """``click``, ``kvm_telegraf``, ``stdlib:xml``, ... for a source file's path."""
    if path.startswith("<frozen importlib"):
        return "code objects of every imported module (importlib)"
    parts = path.split(os.sep)
    for index, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages"):
            return parts[index + 1].removesuffix(".py")
    for index, part in enumerate(parts[:-1]):
        if part.startswith("python3"):
            return "stdlib:" + parts[index + 1].removesuffix(".py")
    return path


def main(argv: List[str]) -> int:
    uri, glob, cycles, stats, mode = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    if mode == "heap":
        tracemalloc.start()
    steps: List[Dict] = []
    state: Dict = {}

    def step(name: str, action: Callable[[], None]) -> None:
        action()
        gc.collect()
        steps.append(
            {
                "step": name,
                **status(),
                "modules": len(sys.modules),
                "heap_kib": tracemalloc.get_traced_memory()[0] // 1024,
                "threads_py": threading.active_count(),
            }
        )

    def connect() -> None:
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        state["conn"] = libvirt.openReadOnly(uri)
        state["conn"].getAllDomainStats(stats, 0)

    def import_cli() -> None:
        import kvm_telegraf.cli  # noqa: F401 - what the entry point imports first

    def import_pipeline() -> None:
        import kvm_telegraf.program  # noqa: F401 - collect, shape, encode, domain_xml, events, ...

    def build() -> None:
        from kvm_telegraf.cli import main as cli_main
        from kvm_telegraf.connection import open_read_only
        from kvm_telegraf.program import build_pipeline
        from kvm_telegraf.settings import Settings

        settings = Settings.from_options(cli_main.make_context("kvm-telegraf", ["--uri", uri, "--domain", glob]).params)
        state["pipeline"] = build_pipeline(settings, open(os.devnull, "wb"), open_read_only, events=True)  # noqa: SIM115

    step("interpreter", lambda: None)
    step("import libvirt", lambda: __import__("libvirt"))
    step("connection and one bulk call (the bare process)", connect)
    before_ours = tracemalloc.take_snapshot() if mode == "heap" else None
    step("import click", lambda: __import__("click"))
    step("import kvm_telegraf.cli (logging, the options)", import_cli)
    step("import xml.etree.ElementTree", lambda: __import__("xml.etree.ElementTree"))
    step("import the pipeline's modules (kvm_telegraf.program)", import_pipeline)
    step("pipeline built (event loop thread)", build)
    step("first cycle (workers, XML cache)", lambda: state["pipeline"].cycle())
    step(f"{cycles} more cycles", lambda: [state["pipeline"].cycle() for _ in range(cycles)])
    packages: Dict[str, int] = {}
    if before_ours is not None:
        for diff in tracemalloc.take_snapshot().compare_to(before_ours, "filename"):
            name = package_of(diff.traceback[0].filename)
            packages[name] = packages.get(name, 0) + diff.size_diff
    heap = sorted(((name, size // 1024) for name, size in packages.items() if size > 0), key=lambda item: -item[1])
    print(json.dumps({"steps": steps, "heap_by_package_kib": heap[:10]}))
    state["pipeline"].source.close()
    state["conn"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
