"""Usage import at disk speed (issue 18 item 4) without changing what it accepts: rows of the
usual shape skip marshmallow and get the same rows and errors as through it (a hypothesis
property over well-formed and malformed rows); an import of up to ``USAGE_CHUNK`` rows is
one transaction (a row the database refuses leaves nothing written); rows are written in
the unique index's order whatever the sender's; usage records carry only the indexes a query
uses, and core migration 10 drops the two others from an existing database."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.billing import catalog
from core.billing.models import UsageRecord
from core.db import database
from tests.billing_support import setup_catalog, subscribe


@pytest.fixture
def subs(world):
    _, plan = setup_catalog(world.provider, kind="usage")
    inside = subscribe(world.customer_a, plan, start="2026-01-01", end="2026-03-01")
    other = subscribe(world.customer_b, plan, start="2026-01-01")
    return inside, other


def plain_rows(sub, count, start=0):
    return [{"external_id": f"e-{n}", "subscription_id": sub.id,
             "quantity": f"{n % 7}.{n % 10}", "date": f"2026-01-{n % 28 + 1:02d}"}
            for n in range(start, start + count)]  # fmt: skip


# -- the same rows and errors with and without marshmallow ------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "1e3", "+1", "-1", ".5", "1.", " 2 ", "1,5", "NaN", "\x00",
                            "1234567", "999999.9999999999", "0.12345678901", "x" * 101,
                            "2026-02-30", "2026-1-5", "05/01/2026", "a b", "é", "4111111111111111"])  # fmt: skip
VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=3), ODD_TEXT,
    st.from_regex(r"\d{1,7}(\.\d{0,11})?", fullmatch=True), st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip


# per field: values just outside the usual shape, and a strategy for values of that shape
NEAR = {
    "external_id": ["", " ", "a b", " a", "x" * 100, "y" * 101, "\x7f", "é", "\t", "a\x00",
                    "\u00a0"],
    "quantity": ["999999", "1000000", "1234567", "999999.9999999999", "0.12345678901", "1.",
                 ".5", "+1", " 1", "1 ", "-0", "-1", "00000001", "1e3", "\u0661\u0662", "1_0",
                 "0x1", "", "1,5"],
    "date": ["2026-02-30", "2026-1-5", " 2026-01-05", "", "2026-01-05T00:00", "2025-11-30"],
}  # fmt: skip
PLAIN = {
    "external_id": st.from_regex(r"[!-~]{1,12}", fullmatch=True),
    "quantity": st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,10})?", fullmatch=True),
    "date": st.dates(date(2025, 12, 1), date(2026, 4, 1)).map(str),
}


def near_ids(sub_ids):
    return [str(sub_ids[0]), f" {sub_ids[0]} ", "99999", "x", "0", True, 1.0, None]


@st.composite
def usage_row(draw, sub_ids):
    """A row of the usual shape with at most one field odd (just outside the shape, or
    anything), a key missing or one too many now and then, or not a row at all."""
    plain = {**PLAIN, "subscription_id": st.sampled_from(sub_ids)}
    near = {**NEAR, "subscription_id": near_ids(sub_ids)}
    odd = draw(st.sampled_from([None, *sorted(plain)]))
    row = {name: draw(st.one_of(st.sampled_from(near[name]), VALUE) if name == odd else value)
           for name, value in plain.items()}  # fmt: skip
    if not draw(st.integers(0, 7)):
        row.pop(draw(st.sampled_from(sorted(row))))
    if not draw(st.integers(0, 7)):
        row["extra"] = 1
    return row if draw(st.integers(0, 9)) else draw(VALUE)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_rows_of_the_usual_shape_are_judged_as_marshmallow_judges_them(subs, data):
    ids = [s.id for s in subs]
    rows = data.draw(st.lists(usage_row(ids), min_size=1, max_size=8))
    assert catalog.check_usage(rows, fast=True) == catalog.check_usage(rows, fast=False)


def test_every_value_just_outside_the_usual_shape_is_judged_as_marshmallow_judges_it(subs):
    """Each field's boundary values (``NEAR``) in an otherwise usual row, every one of them:
    a random draw may miss the one the fast path gets wrong."""
    plain = plain_rows(subs[0], 1)[0]
    near = {**NEAR, "subscription_id": near_ids([subs[0].id])}
    rows = [{**plain, name: value} for name, values in near.items() for value in values]
    assert catalog.check_usage(rows, fast=True) == catalog.check_usage(rows, fast=False)
    assert len(catalog.check_usage(rows)[1]) > len(rows) / 2  # most of them are refused


def test_the_usual_shape_does_skip_marshmallow(subs, monkeypatch):
    inside, _ = subs
    rows = plain_rows(inside, 50)

    def refuse(*args, **kwargs):
        raise AssertionError("marshmallow was asked about a row of the usual shape")

    monkeypatch.setattr(catalog.UsageInput, "load", refuse)
    good, bad = catalog.check_usage(rows)
    assert not bad and len(good) == 50


# -- writing ----------------------------------------------------------------------------------


def test_an_import_is_one_transaction_a_refused_row_leaves_nothing(subs):
    inside, _ = subs
    good, bad = catalog.check_usage(plain_rows(inside, 1200))
    assert not bad
    good[-1] = {**good[-1], "subscription": 987654}  # gone between the check and the write
    with pytest.raises(Exception) as err:
        catalog.insert_usage(good)
    assert "foreign key" in str(err.value).lower()
    assert UsageRecord.select().count() == 0


def test_scattered_rows_are_all_written_once_and_the_second_import_finds_them(subs):
    inside, other = subs
    rows = plain_rows(inside, 300) + plain_rows(other, 300)
    rows = rows[::-1][::2] + rows[::-1][1::2]  # neither the sender's nor the index's order
    good, bad = catalog.check_usage(rows)
    assert not bad
    assert catalog.insert_usage(good, chunk=250) == (600, 0)
    assert catalog.insert_usage(good, chunk=250) == (0, 600)
    stored = {(u.account_id, u.external_id, u.quantity, u.occurred_at)
              for u in UsageRecord.select()}  # fmt: skip
    assert stored == {(r["account"], r["external_id"], r["quantity"], r["occurred_at"])
                      for r in good}  # fmt: skip


# -- indexes ----------------------------------------------------------------------------------


def _usage_indexes() -> set[tuple[str, ...]]:
    """The secondary indexes' columns (PostgreSQL lists the primary key's too)."""
    return {tuple(i.columns) for i in database.get_indexes("usage_record")} - {("id",)}


def test_usage_records_have_only_the_indexes_a_query_uses(ctx):
    assert _usage_indexes() == {
        ("account_id", "external_id"),  # idempotent imports, lookups by account
        ("account_id", "occurred_at"),  # a bill run's period, the usage report
        ("subscription_id",),  # wholesale usage of a reseller's subscriptions, the FK check
    }


def test_migration_10_drops_the_unused_indexes_of_an_existing_database(ctx):
    from core.migrations import SchemaMigration
    from hostapp.app import start_database

    SchemaMigration.delete().where(
        (SchemaMigration.plugin == "core") & (SchemaMigration.version == 10)
    ).execute()
    database.execute_sql('CREATE INDEX "usage_record_account_id" ON "usage_record" ("account_id")')
    database.execute_sql(
        'CREATE INDEX "usage_record_occurred_at" ON "usage_record" ("occurred_at")'
    )
    assert len(_usage_indexes()) == 5
    start_database(database.obj, ctx.extensions["billhive"].host)
    assert ("occurred_at",) not in _usage_indexes() and ("account_id",) not in _usage_indexes()
    assert SchemaMigration.get_or_none(plugin="core", version=10) is not None


def test_parallel_imports_of_overlapping_rows_store_each_record_once(ctx, subs):
    """Four callers import overlapping usage at once, each in its own order and chunk size
    (several transactions each): every record is stored once, the inserted counts add up to
    the distinct records, and no caller fails (on PostgreSQL, transactions inserting the same
    keys in opposite orders would deadlock: each chunk is written in the key's order)."""
    import random
    import threading

    inside, other = subs
    rows = plain_rows(inside, 400) + plain_rows(other, 400)
    good, bad = catalog.check_usage(rows)
    assert not bad
    shares = []
    for n in range(4):
        share = random.Random(n).sample(good, 500)
        shares.append((share, 120 + 40 * n))
    barrier = threading.Barrier(len(shares))
    results: list = [None] * len(shares)

    def run(index, share, chunk):
        with ctx.app_context(), database.connection_context():
            barrier.wait()
            try:
                results[index] = catalog.insert_usage(share, chunk=chunk)
            except Exception as exc:  # noqa: BLE001 - the assertions below report it
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i, *s)) for i, s in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [r for r in results if not isinstance(r, tuple)], results
    distinct = {(r["account"], r["external_id"]) for share, _ in shares for r in share}
    assert sum(inserted for inserted, _ in results) == len(distinct)
    assert sum(dup for _, dup in results) == 4 * 500 - len(distinct)
    stored = [(u.account_id, u.external_id) for u in UsageRecord.select()]
    assert len(stored) == len(set(stored)) == len(distinct)
