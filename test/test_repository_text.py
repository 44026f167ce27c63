"""The repository's text stays self-contained: no absolute paths of a machine, no citations of
documents that are not in the repository, a short README, and documentation links that resolve.

Design decisions are cited as ``docs/design.md#<anchor>`` (or by their number, ``D5``); both must be
defined in docs/design.md.
"""
from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 12_000

# Built from pieces so that this file does not match its own patterns.
_SLASH = "/"
MACHINE_PATH = re.compile(
    "|".join(
        [
            re.escape(_SLASH + "work" + _SLASH),
            re.escape(_SLASH + "root" + _SLASH),
            re.escape(_SLASH + "home" + _SLASH) + r"[^/\s]+/",
            re.escape(_SLASH + "tmp" + _SLASH) + r"[\w.-]",
        ]
    )
)
MISSING_DOCUMENT = re.compile(r"\b(?:" + "models" + r"|" + "ros" + r")\.md\b")
DECISION = re.compile(r"\bD(\d{1,2})\b")
DESIGN_CITATION = re.compile(r"docs/design\.md#([a-z0-9_-]+)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
BINARY_SUFFIXES = {".png", ".jpg", ".gif", ".safetensors", ".onnx", ".mcap", ".db3", ".pt", ".pth"}


@lru_cache(maxsize=1)
def tracked_text_files() -> dict[str, str]:
    """Every tracked text file (git ls-files), path -> content."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    files = {}
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or path.suffix in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files[name] = data.decode("utf-8", errors="replace")
    return files


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub derives from a Markdown file's headings (lowercase, punctuation dropped,
    spaces to hyphens, -1, -2 ... for repeats)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def design_text() -> str:
    return (ROOT / "docs" / "design.md").read_text()


def test_no_machine_paths():
    hits = [
        f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for name, text in tracked_text_files().items()
        for m in MACHINE_PATH.finditer(text)
    ]
    assert not hits, "absolute machine paths in tracked files:\n" + "\n".join(hits)


def test_no_citations_of_documents_outside_the_repository():
    hits = [
        f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for name, text in tracked_text_files().items()
        for m in MISSING_DOCUMENT.finditer(text)
    ]
    assert not hits, "citations of documents that are not in the repository:\n" + "\n".join(hits)


def test_cited_decisions_are_defined_in_design_md():
    design = design_text()
    headings = [line for line in design.splitlines() if line.startswith("#")]
    defined = {int(n) for line in headings for n in DECISION.findall(line)}
    anchors = github_anchors(design)
    undefined = []
    for name, text in tracked_text_files().items():
        for m in DECISION.finditer(text):
            if int(m.group(1)) not in defined:
                undefined.append(f"{name}: {m.group(0)}")
        for m in DESIGN_CITATION.finditer(text):
            if m.group(1) not in anchors:
                undefined.append(f"{name}: docs/design.md#{m.group(1)}")
    assert not undefined, "decisions cited but not defined in docs/design.md:\n" + "\n".join(undefined)


def test_readme_is_short():
    length = len((ROOT / "README.md").read_text())
    assert length <= README_LIMIT, f"README.md has {length} characters (limit {README_LIMIT}): move detail to docs/"


def documentation_files() -> list[Path]:
    names = ["README.md", "BENCHMARKS.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
    names += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "models").glob("*.md"))
    return [ROOT / n for n in names]


def test_relative_links_resolve():
    broken = []
    for doc in documentation_files():
        text = INLINE_CODE.sub("", FENCE.sub("", doc.read_text()))
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists() or ROOT not in [resolved, *resolved.parents]:
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in github_anchors(resolved.read_text()):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
