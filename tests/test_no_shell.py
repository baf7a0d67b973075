"""Security: no shell anywhere. Every process this project starts gets an argv list.

A shell would let a domain name, a URI or a path from a config file become a command.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List

ROOT = Path(__file__).resolve().parent.parent
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def python_files() -> Iterator[Path]:
    for folder in ("kvm_telegraf", "tests", "benchmarks", "examples", "scripts"):
        yield from (ROOT / folder).rglob("*.py")


def shell_uses(source: str) -> List[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        named = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        if named and (func.value.id, func.attr) in SHELL_CALLS:
            found.append(f"line {node.lineno}: {func.value.id}.{func.attr}()")
        for keyword in node.keywords:
            explicit_false = isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            if keyword.arg == "shell" and not explicit_false:
                found.append(f"line {node.lineno}: shell=")
    return found


def test_the_checker_finds_each_kind_of_shell_call():
    source = "import os, subprocess\nos.system('x')\nsubprocess.run('x', shell=True)\nsubprocess.getoutput('x')\n"
    assert len(shell_uses(source)) == 3


def test_no_code_in_the_project_starts_a_shell():
    offenders = {str(path.relative_to(ROOT)): uses for path in python_files() if (uses := shell_uses(path.read_text()))}
    assert offenders == {}
