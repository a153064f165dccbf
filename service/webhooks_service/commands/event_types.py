"""``webhooks event-types``: the event catalog, from the generated catalog (no server needed).

Prints one line per type (name and description); ``--category reward`` keeps
one category; ``--json`` prints what ``ListEventTypes`` answers, schemas and
examples included; ``--schema TYPE`` prints one type's JSON Schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from webhooks_service.core import catalog, event_types
from webhooks_service.errors import InvalidArgument


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "event-types", help="list the event catalog (types, descriptions, JSON Schemas)"
    )
    parser.add_argument("--category", default="", help="only this category, e.g. reward")
    parser.add_argument(
        "--json", action="store_true", help="print the catalog as JSON, with schemas and examples"
    )
    parser.add_argument("--schema", metavar="TYPE", help="print the JSON Schema of one type")
    parser.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    types = event_types.list_event_types(args.category)
    if args.schema:
        found = [t for t in event_types.described_types() if t.name == args.schema]
        if not found:
            names = [t.name for t in event_types.described_types()]
            raise InvalidArgument(
                f"unknown event type {args.schema!r}: {catalog.did_you_mean(args.schema, names)}"
            )
        print(json.dumps(found[0].schema, indent=2))
        return 0
    if args.json:
        print(json.dumps({"event_types": [asdict(t) for t in types]}, indent=2))
        return 0
    width = max(len(t.name) for t in types)
    for t in types:
        line = " ".join(t.description.split("\n\n")[0].split())
        if not catalog.is_publishable(t.name):
            line += "  [sent by the service]"
        print(f"{t.name:<{width}}  {line}")
    print(
        "\n(--json adds the JSON Schema and an example of each; see also docs/events.md)",
        file=sys.stderr,
    )
    return 0
