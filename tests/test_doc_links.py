"""No link in the docs is broken: every relative link names a file of the tree, every #anchor a heading.

Anchors follow GitHub's rules (tests/harness/markdown.py), so what passes here works on GitHub.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from tests.harness.markdown import anchors, is_external, link_targets

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".git", ".venv", ".cache", "build", "dist", "node_modules"}
PAGES = sorted(
    p for p in ROOT.rglob("*.md") if not SKIPPED & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)
)


def broken_links(page: Path, root: Path = ROOT) -> List[str]:
    """Each link of the page that leads nowhere, as 'line: target (why)'."""
    broken = []
    for line, target in link_targets(page.read_text(encoding="utf-8")):
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{line}: {target} (no such file)")
        elif root not in destination.parents and destination != root:
            broken.append(f"{line}: {target} (outside the repository)")
        elif anchor and destination.suffix != ".md":
            broken.append(f"{line}: {target} (an anchor into a file that is not Markdown)")
        elif anchor and anchor not in anchors(destination.read_text(encoding="utf-8")):
            broken.append(f"{line}: {target} (no such heading in {destination.relative_to(root)})")
    return broken


def test_the_pages_checked_include_the_readme_the_docs_and_the_pages_that_link_into_them():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CHANGELOG.md", "benchmarks/README.md", "tests/lab/README.md"} <= names
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_leads_somewhere(page):
    broken = broken_links(page)
    assert not broken, "broken links, as line: target (why):\n" + "\n".join(broken)


# --- the checker itself, on pages written here ---------------------------------------------------


def test_anchors_are_githubs_lower_case_spaces_to_dashes_punctuation_dropped_repeats_numbered():
    page = "\n".join(
        [
            "# Coming from Telegraf's inputs.libvirt",
            "## Statistics groups: `--collect`",
            "### vm_events: one point per libvirt event, with `--collect events`",
            "## Notes",
            "## Notes",
            "## Notes",
            "```sh",
            "# not a heading",
            "```",
            "## [Linked](elsewhere.md) *heading*",
        ]
    )
    assert anchors(page) == [
        "coming-from-telegrafs-inputslibvirt",
        "statistics-groups---collect",
        "vm_events-one-point-per-libvirt-event-with---collect-events",
        "notes",
        "notes-1",
        "notes-2",
        "linked-heading",
    ]


def test_links_in_code_are_not_links_and_a_link_may_wrap_onto_the_next_line():
    page = "see [the\nsection](#a) and `[no](#b)`\n\n```md\n[no](#c)\n```\n[ref]: docs/x.md#d\n"
    assert link_targets(page) == [(1, "#a"), (7, "docs/x.md#d")]


def test_a_missing_file_a_missing_heading_and_a_good_link_are_told_apart(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "metrics.md").write_text("# Metrics\n\n## vm_vcpus: per vCPU\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n[a](docs/metrics.md#vm_vcpus-per-vcpu) [b](docs/metrics.md#vm_vcpus) [c](docs/gone.md)"
        " [d](#top) [e](#bottom) [f](https://example.org/x#y)\n"
    )
    assert broken_links(page, tmp_path) == [
        "2: docs/metrics.md#vm_vcpus (no such heading in docs/metrics.md)",
        "2: docs/gone.md (no such file)",
        "2: #bottom (no such heading in README.md)",
    ]
