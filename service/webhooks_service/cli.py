"""The ``webhooks`` command line.

Each command lives in its own module under ``commands/`` and exposes
``register(subparsers)``; this module only assembles them and turns the
service's errors into one-line messages (exit status 2) instead of tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webhooks_service.commands import COMMAND_MODULES
from webhooks_service.errors import WebhooksError


def _own_usage(parser: argparse.ArgumentParser) -> None:
    """Remember, in every (sub)command's defaults, the parser that defined it, so
    that an unknown option is reported with that command's usage
    (``webhooks serve --bogus`` -> ``usage: webhooks serve [...]``)."""
    parser.set_defaults(_command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _own_usage(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhooks",
        description="Webhook delivery service: gRPC admin and publish API, delivery workers, "
        "REST gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    _own_usage(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = getattr(args, "_command_parser", parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.handler(args)
    except WebhooksError as exc:
        print(f"webhooks: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
