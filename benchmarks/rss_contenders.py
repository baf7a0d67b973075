"""The processes whose peak RSS benchmarks/rss_floor.py compares: each answers every newline on stdin with a batch.

    python rss_contenders.py minimal|run-path|run-path-nolog URI GLOB

Run with the Python of a plain kvm-telegraf install (benchmarks/host.py: the development venv's editable
install loads an import hook of some 2 MiB). Each imports only what it needs, so this file imports nothing
at its top but sys (its annotations are never evaluated: no typing either).

- ``minimal``: the least a Python process printing this schema does: the bulk call on a worker thread, each
  domain's XML read once and parsed with ElementTree (a few facts kept), every stat of a domain printed as
  ``key=value`` on one line.
- ``run-path``: what ``kvm-telegraf --domain GLOB`` runs and nothing it could skip: kvm_telegraf.program's
  run from Settings made in code, without click and the command line's modules (cli, config).
- ``run-path-nolog``: the same with ``logging`` replaced by a stub that drops every line: the size of a run
  without the logging module (a sizing, not a way to run: nothing is logged).
"""

from __future__ import annotations

import sys


def minimal(uri: str, glob: str) -> int:
    import fnmatch
    import queue
    import threading
    import xml.etree.ElementTree as ElementTree

    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    calls: queue.SimpleQueue = queue.SimpleQueue()
    answers: queue.SimpleQueue = queue.SimpleQueue()

    def serve() -> None:
        while True:
            answers.put(calls.get()())

    threading.Thread(target=serve, daemon=True).start()
    facts = {}
    for _ in iter(sys.stdin.readline, ""):
        calls.put(lambda: conn.getAllDomainStats(0, 0))
        lines = []
        for dom, stats in answers.get():
            name = dom.name()
            if not fnmatch.fnmatchcase(name, glob):
                continue
            uuid = dom.UUIDString()
            if uuid not in facts:
                root = ElementTree.fromstring(dom.XMLDesc(0))
                os_type = root.find("os/type")
                features = root.find("features")
                facts[uuid] = (
                    os_type.text if os_type is not None else "",
                    tuple(child.tag for child in (features if features is not None else ())),
                )
            fields = ",".join(f"{key}={value}" for key, value in stats.items())
            lines.append(f'vm,uuid={uuid},vm={name} os_type="{facts[uuid][0]}",{fields} 0\n')
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
    return 0


def stub_logging() -> None:
    """A ``logging`` that drops every line, in sys.modules before anything imports the real one."""
    import types

    class Logger:
        def __init__(self) -> None:
            self.handlers: list = []
            self.propagate = True

        def drop(self, *_args: object, **_kwargs: object) -> None:
            pass

        debug = info = warning = error = exception = critical = drop
        setLevel = addHandler = drop  # noqa: N815 - logging's API

    class Handler:
        terminator = "\n"

        def __init__(self, *_args: object) -> None:
            pass

        def setFormatter(self, _formatter: object) -> None:  # noqa: N802 - logging's API
            pass

    class Formatter:
        pass

    stub = types.ModuleType("logging")
    loggers: dict = {}
    stub.getLogger = lambda name=None: loggers.setdefault(name, Logger())  # type: ignore[attr-defined]
    stub.Formatter, stub.StreamHandler, stub.LogRecord = Formatter, Handler, object  # type: ignore[attr-defined]
    stub.ERROR, stub.WARNING, stub.INFO, stub.DEBUG = 40, 30, 20, 10  # type: ignore[attr-defined]
    sys.modules["logging"] = stub


def run_path(uri: str, glob: str) -> int:
    from kvm_telegraf.domain_filter import DomainFilter
    from kvm_telegraf.program import run
    from kvm_telegraf.settings import Settings

    settings = Settings(uris=(uri,), domain_filter=DomainFilter((glob,), ()))
    return run(settings, sys.stdin.buffer, sys.stdout.buffer)


def main(argv: list[str]) -> int:
    kind, uri, glob = argv
    if kind == "minimal":
        return minimal(uri, glob)
    if kind == "run-path-nolog":
        stub_logging()
    return run_path(uri, glob)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
