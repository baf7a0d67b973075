"""The docs say what the code does: the README's example and drop-in are copies, checked here.

``python -m tests.test_docs`` rewrites the README's example block from the golden.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness.goldens import batches

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DROP_IN = ROOT / "telegraf.d" / "kvm-telegraf.conf"
EXAMPLE = re.compile(r"(<!-- example-output:start -->\n)(.*?)(<!-- example-output:end -->)", re.S)


def example_block() -> str:
    """The second batch of the running-lab golden, for its first guest."""
    batch = batches("lab-running")[1]
    first_vm = batch.split("vm=", 1)[1].split(" ", 1)[0]
    lines = [line for line in batch.splitlines() if f"vm={first_vm} " in line]
    return "```text\n" + "\n".join(lines) + "\n```\n"


def test_readme_example_output_is_copied_from_the_golden():
    match = EXAMPLE.search(README.read_text())
    assert match, "README lost its example-output markers"
    assert match.group(2) == example_block(), "run: python -m tests.test_docs"


def test_readme_carries_the_drop_in_file_verbatim():
    assert f"```toml\n{DROP_IN.read_text()}```" in README.read_text()


if __name__ == "__main__":
    README.write_text(EXAMPLE.sub(lambda m: m.group(1) + example_block() + m.group(3), README.read_text()))
