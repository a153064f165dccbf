"""``webhooks settings``: every setting with its environment variable and default.

``--markdown`` prints the table docs/settings.md carries between its
``settings-table`` markers; a test keeps the two equal.
"""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service.config import SETTINGS


def markdown_table() -> str:
    rows = ["| environment variable | option | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "(unset)" if s.secret or s.default == "" else f"`{s.default}`"
        meaning = s.help.replace("|", "\\|")
        rows.append(f"| `{s.env}` | `{s.option}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "settings", help="list every setting, its environment variable and default"
    )
    parser.add_argument("--markdown", action="store_true", help="print docs/settings.md's table")
    parser.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    for s in SETTINGS:
        default = "(hidden)" if s.secret else repr(s.default)
        print(f"{s.env:<44} {default:<34} {s.help}")
    return 0
