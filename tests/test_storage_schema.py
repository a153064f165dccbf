"""The migrations produce exactly the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from webhooks_service.config import SETTINGS, Settings
from webhooks_service.storage.models import Base


def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_settings_defaults_agree_with_declared_defaults() -> None:
    assert Settings.load(env={}) == Settings()
    assert {s.name for s in SETTINGS} == set(Settings.__dataclass_fields__)
