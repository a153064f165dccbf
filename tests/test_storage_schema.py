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


def test_every_declared_index_exists_after_the_migrations(engine: Engine) -> None:
    """Expression indexes too (ix_attempts_org_status_class), which the comparison above
    cannot see on SQLite: a migration that rebuilds a table there must keep them."""
    declared = {index.name for table in Base.metadata.sorted_tables for index in table.indexes}
    if engine.dialect.name == "sqlite":
        listing = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        listing = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    with engine.connect() as conn:
        present = set(conn.exec_driver_sql(listing).scalars())
    assert declared - present == set(), "declared indexes missing from the database"
