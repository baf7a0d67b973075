"""Instructions per stage, from valgrind's callgrind: counts that the machine's load does not move.

The program under valgrind calls ``os.getpgrp()`` between its parts and prints the parts' names as
JSON; ``--dump-before=getpgrp`` makes callgrind write one profile per part, each with the
instructions executed since the one before. Two programs are counted:

- the synthetic host (``python -m benchmarks.synthetic --stages N``): shape, encode, write;
- the live guests (``same_process.py URI GLOB N --callgrind``): the bare call with the name filter,
  then collect, shape, encode and write of one pipeline cycle.

Each stage's figure is the median over its N repetitions.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

TOTALS = re.compile(r"^totals: (\d+)$", re.MULTILINE)
PART = re.compile(r"^part: (\d+)$", re.MULTILINE)


def part_totals(directory: Path, stem: str = "cg.out") -> Dict[int, int]:
    """Part number -> instructions, from the profiles callgrind dumped into *directory*."""
    totals = {}
    for path in directory.glob(f"{stem}*"):
        text = path.read_text(errors="replace")
        part, total = PART.search(text), TOTALS.search(text)
        if part and total:
            totals[int(part.group(1))] = int(total.group(1))
    return totals


def per_stage(names: Sequence[str], totals: Dict[int, int]) -> Dict[str, int]:
    """Each named stage's median count; part k (from 1) is names[k - 1], the parts after the names are left out."""
    counts: Dict[str, List[int]] = {}
    for index, name in enumerate(names, start=1):
        if index in totals:
            counts.setdefault(name, []).append(totals[index])
    return {name: int(statistics.median(values)) for name, values in counts.items()}


def count(argv: Sequence[str], cwd: Path, timeout: float = 900) -> Dict[str, int]:
    """Run *argv* under callgrind with the markers; instructions per stage (setup included, as 'setup')."""
    with tempfile.TemporaryDirectory(prefix="kvm-telegraf-callgrind-") as directory:
        out = Path(directory) / "cg.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=getpgrp", f"--callgrind-out-file={out}", *argv],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-800:]}")
        names = json.loads(done.stdout.strip().splitlines()[-1])["parts"]
        return per_stage(names, part_totals(Path(directory)))
