"""No document points to a file that does not exist.

Checked in README.md and every Markdown file under docs/, deploy/ and bench/:

* Markdown links and images with a relative target (``[text](deploy/coturn/turnserver.conf)``), resolved
  from the document's folder as GitHub does (``#anchors`` and URLs are not checked);
* code spans that name a repository path (```docs/protocol.md```, ```tests/e2e```, or a path inside a
  command such as ```.venv/bin/python bench/load.py --rooms 1```), found from the document's folder or the
  repository root; ``var/`` is left out (the running processes create it);
* any ``Name.md`` mentioned in prose, and in the Makefile and requirements files too (they pointed to
  ``bench/README.md`` and ``DESIGN.md`` while neither existed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    {ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("deploy/*.md"), *ROOT.glob("bench/*.md")},
)
OTHER_FILES = [ROOT / "Makefile", *sorted(ROOT.glob("requirements*.txt"))]
TOP_LEVEL = {path.name for path in ROOT.iterdir() if path.name not in {"var", ".venv", ".git"}}

LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MD_MENTION = re.compile(r"(?<![\w/.-])([\w./-]*[\w-]\.md)\b")
PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)+/?")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def _exists(doc: Path, target: str, *, from_root: bool) -> bool:
    target = target.split("#", 1)[0].split("?", 1)[0]
    if not target:
        return True
    bases = [doc.parent, ROOT] if from_root else [doc.parent]
    return any((base / target).exists() for base in bases)


def _code_span_paths(span: str) -> list[str]:
    """Repository paths named in one code span: the whole span if it is a path, else path-like words with a
    file extension or a trailing slash (``rooms/1000`` in ``load + rooms/1000`` is arithmetic, not a path)."""
    words = span.split()
    if len(words) == 1:
        candidates = [words[0].rstrip(".,:;")]
    else:
        candidates = [w.strip("(),;:'\"") for w in words]
        candidates = [w for w in candidates if re.search(r"\.\w+$|/$", w)]
    return [
        word
        for word in candidates
        if PATH.fullmatch(word) and word.split("/", 1)[0] in TOP_LEVEL and "<" not in word and "*" not in word
    ]


def broken_references(doc: Path, text: str | None = None) -> list[str]:
    """What ``doc`` (or ``text`` as if it were at ``doc``) points to that does not exist."""
    text = doc.read_text() if text is None else text
    broken: list[str] = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):  # URLs, anchors, site paths
            continue
        if not _exists(doc, target, from_root=False):
            broken.append(target)
    prose = FENCE.sub("", text)
    for match in CODE_SPAN.finditer(prose):
        for path in _code_span_paths(match.group(1)):
            if not _exists(doc, path, from_root=True):
                broken.append(path)
    for match in MD_MENTION.finditer(text):
        if not _exists(doc, match.group(1), from_root=True):
            broken.append(match.group(1))
    return sorted(set(broken))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_document_points_to_exists(doc: Path) -> None:
    assert broken_references(doc) == []


@pytest.mark.parametrize("path", OTHER_FILES, ids=lambda p: p.name)
def test_the_makefile_and_requirements_mention_only_documents_that_exist(path: Path) -> None:
    mentions = {m.group(1) for m in MD_MENTION.finditer(path.read_text())}
    assert sorted(m for m in mentions if not (ROOT / m).exists()) == []


def test_the_checker_finds_a_broken_link_a_missing_path_and_a_missing_document() -> None:
    text = (
        "[ok](../README.md) [gone](nowhere.md) `docs/nowhere.md` `.venv/bin/python bench/nowhere.py --x 1`\n"
        "`load + rooms/1000` `/join/<roomId>` `var/celery` `docs/protocol.md` see DESIGN.md\n"
    )
    found = broken_references(ROOT / "docs" / "new.md", text)
    # Not the existing README and protocol.md, the arithmetic, the site path or var/.
    assert found == ["DESIGN.md", "bench/nowhere.py", "docs/nowhere.md", "nowhere.md"]
