"""What start-up does to the tables (``core.db.create_missing``, every start and every enabled
plugin): it reads the catalog once, makes a missing table with its indexes and a missing index
of an existing table, and sends no ``CREATE`` for what is there (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from core.db import create_missing, database
from core.models import CORE_MODELS, create_core_tables


@pytest.fixture
def statements(caplog):
    """The SQL peewee sends from here on (its DEBUG log)."""
    caplog.set_level(logging.DEBUG, logger="peewee")
    caplog.clear()
    return lambda: [r.getMessage() for r in caplog.records if r.name == "peewee"]


def _index_names(table: str) -> set[str]:
    return {index.name for index in database.get_indexes(table)}


def test_a_complete_database_gets_no_create_at_all(ctx, statements):
    create_core_tables()
    sent = statements()
    assert sent and not [s for s in sent if "CREATE" in s.upper()], sent


def test_a_missing_table_and_a_missing_index_are_made_and_nothing_else(ctx, statements):
    from core.models import ApiToken

    indexes = _index_names("account")
    assert "account_path" in indexes
    database.execute_sql('DROP INDEX "account_path"')
    database.drop_tables([ApiToken])
    statements()  # what the drops sent is not start-up's
    create_missing(CORE_MODELS)

    assert database.table_exists("api_token")
    assert _index_names("account") == indexes
    creates = [s for s in statements() if "CREATE" in s.upper()]
    assert creates and all('"api_token' in s or '"account_path"' in s for s in creates), creates
