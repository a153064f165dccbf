"""Subcommands of the ``webhooks`` CLI, one module each (see cli.py)."""

from __future__ import annotations

from types import ModuleType

from webhooks_service.commands import (
    dashboard,
    db,
    event_types,
    gateway,
    keys,
    orgs,
    prune,
    run,
    secrets,
    serve,
    settings,
    worker,
)

COMMAND_MODULES: list[ModuleType] = [
    serve,
    worker,
    db,
    orgs,
    keys,
    gateway,
    run,
    prune,
    secrets,
    settings,
    event_types,
    dashboard,
]
