"""The docs say what the code does: the README's example and drop-in are copies, checked here.

The README stays short enough for an operator's first read; the rest lives in docs/.

``python -m tests.test_docs`` rewrites the README's example block from the golden.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Set

from tests.harness.goldens import batches

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "kvm_telegraf"
DROP_IN = ROOT / "telegraf.d" / "kvm-telegraf.conf"
README_MAX_BYTES = 35_000  # issue 21: at most 35 KB; it was 114 KB before docs/ took the rest
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


def test_the_readme_stays_at_most_35_kb():
    assert len(README.read_bytes()) <= README_MAX_BYTES, "move the detail to docs/ and link it"


def package_modules() -> Dict[str, Path]:
    """Each module of the package by dotted name below it (``groups.vcpu``; ``groups`` for its registry)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = [part for part in path.relative_to(PACKAGE).with_suffix("").parts if part != "__init__"]
        modules[".".join(parts) or "__init__"] = path
    return modules


def package_imports() -> Dict[str, Set[str]]:
    """Each module of the package and the package's modules it imports."""
    modules = package_modules()
    imports = {}
    for name, path in modules.items():
        found: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{PACKAGE.name}."):
                target = node.module[len(PACKAGE.name) + 1 :]
                submodules = {f"{target}.{alias.name}" for alias in node.names} & set(modules)
                found |= submodules or {target}
        imports[name] = found - {name}
    return imports


def test_no_module_of_the_package_imports_one_that_depends_on_it():
    imports = package_imports()
    for module in imports:
        reached, todo = set(), list(imports[module])
        while todo:
            other = todo.pop()
            if other not in reached:
                reached.add(other)
                todo += imports.get(other, ())
        assert module not in reached, f"{module} is part of an import cycle"


def room(module: str) -> str:
    """How the architecture note names a module: ``cli.py``, and the groups' folder as one room."""
    return "groups/" if module.split(".")[0] == "groups" else f"{module}.py"


def floors() -> Dict[str, int]:
    """Each room's floor: 1 for a room that imports none of the package, else one above the highest it imports."""
    imports: Dict[str, Set[str]] = {}
    for module, targets in package_imports().items():
        imports.setdefault(room(module), set()).update(room(target) for target in targets)
    found: Dict[str, int] = {}

    def floor(name: str) -> int:
        if name not in found:
            found[name] = 1 + max((floor(other) for other in imports[name] - {name}), default=0)
        return found[name]

    return {name: floor(name) for name in imports}


def test_the_architecture_note_names_every_module_of_the_package():
    note = ARCHITECTURE.read_text()
    unnamed = sorted(m for m in package_modules() if "." not in m and f"`{room(m)}`" not in note)
    assert unnamed == []


def test_the_architecture_notes_floors_are_the_ones_the_imports_make():
    section = ARCHITECTURE.read_text().split("\n## Floors\n", 1)[1].split("\n## ", 1)[0]
    listed = {
        name: int(number)
        for number, rooms in re.findall(r"^(\d+)\. (.+)$", section, re.M)
        for name in re.findall(r"`([^`]+)`", rooms)
    }
    assert listed == floors()


def test_outside_the_groups_modules_no_code_tests_a_groups_name():
    from kvm_telegraf.groups import NAMES

    names = set(NAMES)
    tested = []
    for module, path in package_modules().items():
        if module.split(".")[0] == "groups":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in (node.left, *node.comparators):
                    if isinstance(operand, ast.Constant) and operand.value in names:
                        tested.append(f"{module}:{node.lineno} {operand.value!r}")
    assert tested == []


if __name__ == "__main__":
    README.write_text(EXAMPLE.sub(lambda m: m.group(1) + example_block() + m.group(3), README.read_text()))
