"""The core's private hot-path helpers (core._fastpath: insert_rows, insert_row, Prepared)
store and find exactly what the ORM would, on SQLite and PostgreSQL, while generating each
statement's SQL once."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from core._fastpath import INSERT_CHUNK, Prepared, insert_row, insert_rows
from core.billing.models import UsageRecord
from core.models import Account, AuditEntry
from tests.billing_support import setup_catalog, subscribe

# more digits than a double holds: DecimalTextField must keep every one
EXACT = Decimal("12345678901234.000000000000000001")


@pytest.fixture
def sub(world):
    _, plan = setup_catalog(world.provider)
    return subscribe(world.customer_a, plan)


def _usage(sub, external_id, quantity=EXACT, day=date(2026, 1, 5)):
    return {"subscription": sub.id, "account": sub.account_id, "quantity": quantity,
            "occurred_at": day, "external_id": external_id}  # fmt: skip


def _stored(external_id) -> dict:
    row = UsageRecord.get(UsageRecord.external_id == external_id).__data__
    return {k: v for k, v in row.items() if k not in ("id", "external_id", "created_at")}


def test_insert_rows_stores_what_insert_many_stores(sub):
    UsageRecord.insert_many([_usage(sub, "orm")]).execute()
    assert insert_rows(UsageRecord, [_usage(sub, "fast")]) == 1
    assert _stored("fast") == _stored("orm")
    fast = UsageRecord.get(UsageRecord.external_id == "fast")
    assert fast.quantity == EXACT and fast.occurred_at == date(2026, 1, 5)
    assert isinstance(fast.created_at, datetime)  # the model's default was filled in


def test_insert_rows_writes_more_rows_than_one_statement_takes(sub):
    rows = [_usage(sub, f"r{n}", quantity=Decimal(n)) for n in range(2 * INSERT_CHUNK + 3)]
    assert insert_rows(UsageRecord, rows) == len(rows)
    stored = {r.external_id: r.quantity for r in UsageRecord.select()}
    assert stored == {f"r{n}": Decimal(n) for n in range(len(rows))}


def test_ignore_conflicts_counts_only_the_new_rows(sub):
    assert insert_rows(UsageRecord, [_usage(sub, x) for x in "abc"], ignore_conflicts=True) == 3
    again = [_usage(sub, "a", quantity=Decimal(9)), _usage(sub, "b"), _usage(sub, "d")]
    assert insert_rows(UsageRecord, again, ignore_conflicts=True) == 1
    assert sorted(r.external_id for r in UsageRecord.select()) == ["a", "b", "c", "d"]
    assert UsageRecord.get(UsageRecord.external_id == "a").quantity == EXACT  # not overwritten


def test_insert_row_returns_the_instance_create_would(world):
    entry = insert_row(AuditEntry, {"actor": world.operator, "actor_label": "op", "account":
                                    world.customer_a.id, "action": "test.fast",
                                    "object_type": "thing", "object_id": "7",
                                    "before": None, "after": {"n": 1, "s": "x"}})  # fmt: skip
    stored = AuditEntry.get_by_id(entry.id)
    assert stored.__data__ == entry.__data__
    assert stored.after == {"n": 1, "s": "x"} and stored.actor_id == world.operator.id
    assert not entry._dirty  # like create(): nothing left to save
    second = insert_row(AuditEntry, {"actor_label": "cli", "action": "t", "object_type": "x"})
    assert second.id > entry.id and second.object_id == ""  # defaults as create() gives


def test_prepared_binds_arguments_and_keeps_constants(world):
    builds = []

    def build(account_id, name):
        builds.append(1)
        return Account.select(Account.id).where(
            (Account.id == account_id) & (Account.name == name) & Account.type.in_(["customer"])
        )

    query = Prepared(build)
    a, b = world.customer_a, world.customer_b
    assert query.scalar(a.id, a.name) == a.id
    assert query.scalar(b.id, b.name) == b.id
    assert query.scalar(a.id, b.name) is None  # arguments are not mixed up
    assert query.scalar(world.provider.id, world.provider.name) is None  # the constant holds
    assert len(builds) == 1  # SQL generated once for this database


def test_prepared_instance_is_what_get_returns(world):
    by_id = Prepared(lambda account_id: Account.select().where(Account.id == account_id))
    for account in (world.provider, world.customer_a, world.customer_b):
        found = by_id.instance(account.id)
        assert isinstance(found, Account)
        assert found.__data__ == Account.get_by_id(account.id).__data__
        assert not found._dirty
    assert by_id.instance(10**9) is None
    with pytest.raises(TypeError, match="one whole model"):
        Prepared(lambda i: Account.select(Account.id).where(Account.id == i)).instance(1)


def test_prepared_update_reports_rows_changed(world):
    rename = Prepared(
        lambda name, account_id: Account.update(name=name).where(Account.id == account_id)
    )
    assert rename.rowcount("Renamed", world.customer_a.id) == 1
    assert rename.rowcount("Nobody", 10**9) == 0
    assert Account.get_by_id(world.customer_a.id).name == "Renamed"
    with pytest.raises(TypeError, match="expected 2 argument"):
        rename.execute("only one")
