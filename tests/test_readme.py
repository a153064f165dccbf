"""The README stays a front page, and the reference it points to stays true.

The README gives what the service is, the two commands, the walkthrough
(tests/test_readme_walkthrough.py runs it) and where to read more; the REST
reference is docs/rest.md and the settings table docs/settings.md, the
settings' own table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from webhooks_service.commands.settings import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETTINGS = ROOT / "docs" / "settings.md"
REST = ROOT / "docs" / "rest.md"
OPENAPI = ROOT / "gateway" / "openapi.json"
TABLE = re.compile(r"<!-- settings-table:[^\n]*-->\n(.*?)<!-- end settings-table -->", re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|src=\"([^\"]+)\"")


def test_settings_table_matches_the_settings() -> None:
    match = TABLE.search(SETTINGS.read_text())
    assert match, "docs/settings.md lost its settings-table markers"
    assert match.group(1) == markdown_table(), (
        "docs/settings.md's configuration table is stale: replace it with "
        "`.venv/bin/webhooks settings --markdown`"
    )


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text


def test_readme_is_a_front_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "settings-table" not in text  # the reference lives in docs/
    for doc in ("docs/rest.md", "docs/settings.md"):
        assert f"]({doc})" in text, f"README does not point to {doc}"


def test_links_in_readme_and_docs_resolve() -> None:
    for page in (README, *sorted((ROOT / "docs").glob("*.md"))):
        for match in LINK.finditer(page.read_text()):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_rest_reference_lists_every_rest_path() -> None:
    text = REST.read_text()
    paths = json.loads(OPENAPI.read_text())["paths"]
    missing = [
        f"{method.upper()} {path}"
        for path, methods in paths.items()
        for method in methods
        if f"| `{method.upper()} {path}`" not in text
    ]
    assert missing == [], f"docs/rest.md's table lacks {missing}"
