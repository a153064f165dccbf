"""The README stays true: its configuration table is the settings' own table."""

from __future__ import annotations

import re
from pathlib import Path

from webhooks_service.commands.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE = re.compile(r"<!-- settings-table:[^\n]*-->\n(.*?)<!-- end settings-table -->", re.S)


def test_readme_settings_table_matches_the_settings() -> None:
    match = TABLE.search(README.read_text())
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == markdown_table(), (
        "README's configuration table is stale: replace it with "
        "`.venv/bin/webhooks settings --markdown`"
    )


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
