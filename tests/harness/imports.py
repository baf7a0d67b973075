"""Which modules a real run of kvm-telegraf leaves imported, from a fresh interpreter."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import List, Set

REPO = pathlib.Path(__file__).resolve().parents[2]


def modules_after_run(args: List[str], stdin: str = "") -> Set[str]:
    """``sys.modules`` once ``kvm-telegraf ARGS`` has exited, fed *stdin* (its newlines are the cycles' triggers).

    -S: without site, whose .pth files (the editable install's among them) import urllib.parse and more themselves.
    """
    return modules_after("kvm_telegraf.cli", args, stdin)


def modules_after(module: str, args: List[str], stdin: str = "") -> Set[str]:
    """``sys.modules`` once *module*'s ``main(args)`` has returned or exited, fed *stdin*, from a fresh interpreter
    (-S, as above)."""
    paths = [str(REPO), *(p for p in sys.path if "-packages" in p)]
    code = (
        f"import sys\nsys.path[:0] = {paths!r}\n"
        f"from {module} import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('modules:', *sorted(sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], input=stdin, capture_output=True, text=True, timeout=60)
    last = done.stderr.splitlines()[-1]
    assert last.startswith("modules: "), done.stderr
    return set(last.split()[1:])
