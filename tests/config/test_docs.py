"""The project's documentation stands on its own and agrees with the code.

A fresh clone has the README and ``docs/`` and nothing beside them: every link must lead to a file
(and heading) of the project, the bucketing test vectors an SDK author copies must be the ones the
code computes, and every setting the code reads from the environment must be documented.
"""

import re
import unicodedata
from pathlib import Path

import pytest

from experiments.bucketing import bucket

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]

LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
# Settings read from the environment in config/settings.py: env.str("NAME", ...), environ.Env().str("NAME", ...)
SETTING_RE = re.compile(r"env(?:iron\.Env\(\))?\.(?:str|bool|int|float|list|db)\(\s*\"([A-Z][A-Z0-9_]*)\"")


def _prose(path: Path) -> str:
    """The page without its code blocks (a ``[x](y)`` in a shell example is not a link)."""
    return FENCE_RE.sub("", path.read_text(encoding="utf-8"))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(heading) for heading in HEADING_RE.findall(_prose(path))}


def _links(path: Path) -> list[str]:
    return [
        target for target in LINK_RE.findall(_prose(path)) if not target.startswith(("http://", "https://"))
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs__links__stay_inside_the_project_and_resolve(page: Path):
    # Given a page of the project's documentation
    text = page.read_text(encoding="utf-8")
    # Then it points at nothing outside the project (a fresh clone has nothing beside it)...
    assert "../shared" not in text
    assert "CONTRACT.md" not in text and "STYLE.md" not in text
    # ...and every relative link leads to an existing file, and to an existing heading there
    broken = []
    for target in _links(page):
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists() or (ROOT not in linked.parents and linked != ROOT):
            broken.append(target)
        elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_docs__index__links_every_page():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS:
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
            assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_sdks_doc__bucketing_test_vectors__are_what_the_code_computes():
    # Given the test vectors SDK authors copy from docs/sdks.md ("| seed | unit id | version | bucket |")
    text = (ROOT / "docs" / "sdks.md").read_text(encoding="utf-8")
    table = text.split("| seed | unit id | version | bucket |", 1)[1].split("\n\n", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("|") and not line.startswith("| ---")
    ]
    assert len(rows) >= 3

    def cell(value: str) -> str:
        return "" if value == "(empty)" else value.strip("`")

    # Then each is exactly the double the code computes
    for seed, unit_id, version, expected in rows:
        assert repr(bucket(cell(seed), cell(unit_id), int(version))) == expected, (seed, unit_id)


def test_operations_doc__configuration__documents_every_setting_read_from_the_environment():
    # Given every variable config/settings.py reads from the environment
    names = set(SETTING_RE.findall((ROOT / "config" / "settings.py").read_text(encoding="utf-8")))
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SDK_RATE_LIMIT_PER_MINUTE"} <= names
    # Then the operations guide's configuration table names each of them
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = operations.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in names if f"`{name}`" not in table)
    assert not missing, f"docs/operations.md, Configuration: add {missing}"
