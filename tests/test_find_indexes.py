"""Issue 20 item 1: the lists are index-served on both backends (EXPLAIN), for the provider's
operator (whose subtree is every account) and for a customer admin (a small subtree).

A page is "index-served" when the database reads rows in the list's order from an index and
stops after the page: no sort of every matching row (SQLite: no "USE TEMP B-TREE FOR ORDER
BY"; PostgreSQL, with sequential scans priced out as the planner would at 100,000 rows: no
"Seq Scan" and no full "Sort"). Filters that select few rows (an action, an account) may sort
those few: their index finds them. ``python -m bench.lists`` measures the same at 100,000."""

from __future__ import annotations

import re

import pytest

from core.db import database, is_postgres


@pytest.fixture
def many(world):
    """1,000 more customers of the provider, each with a user, a subscription, an issued
    invoice and an audit entry, so the planner weighs an index against a sort as it would
    on a real instance."""
    from datetime import date, datetime, timedelta

    from core.billing.models import Invoice, Subscription
    from core.models import Account, AuditEntry, User
    from tests.billing_support import setup_catalog

    _, plan = setup_catalog(world.provider)
    first = (Account.select(Account.id).order_by(Account.id.desc()).scalar() or 0) + 1
    ids = range(first, first + 1000)
    day = datetime(2026, 1, 2)
    with database.atomic():
        Account.insert_many([{"id": i, "parent": world.provider.id, "type": "customer",
                              "name": f"Bulk {i:05d}", "path": f"{world.provider.path}{i}/"}
                             for i in ids]).execute()  # fmt: skip
        User.insert_many([{"account": i, "email": f"u{i}@bulk.example", "name": f"U {i}",
                           "password_hash": "x"} for i in ids]).execute()  # fmt: skip
        Subscription.insert_many([{"account": i, "plan": plan.id, "quantity": "1",
                                   "start": date(2026, 1, 1) + timedelta(days=i % 300)}
                                  for i in ids]).execute()  # fmt: skip
        Invoice.insert_many([{"account": i, "issuer": world.provider.id, "status": "issued",
                              "number": f"BULK-{i:06d}", "currency": "EUR", "issued_at": day,
                              "due_date": date(2026, 2, 1) + timedelta(days=i % 30)}
                             for i in ids]).execute()  # fmt: skip
        AuditEntry.insert_many([{"actor_label": "bulk", "account": i, "action": f"bulk.{i % 7}",
                                 "object_type": "account", "object_id": str(i),
                                 "at": day + timedelta(minutes=i)} for i in ids]).execute()  # fmt: skip
    if is_postgres():
        database.execute_sql("ANALYZE")
    return world


def plan(listing, query, user, **raw) -> str:
    from core.find.listing import load_args

    args = load_args(listing.args, {k: str(v) for k, v in raw.items()})
    sql, params = listing.ordered(listing.filtered(query, args, user), args).sql()
    if is_postgres():
        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off")
            rows = database.execute_sql("EXPLAIN " + sql, params).fetchall()
        return "\n".join(r[0] for r in rows)
    rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "\n".join(r[-1] for r in rows)


def assert_ordered_by_index(text: str) -> None:
    if is_postgres():
        assert "Seq Scan" not in text, text
        # an incremental sort on a presorted index key only orders ties: not a full sort
        assert not re.search(r"(?<!Incremental )Sort\s+\(cost", text), text
    else:
        assert "USE TEMP B-TREE FOR ORDER BY" not in text, text
        assert re.search(r"SCAN t1 USING (COVERING )?INDEX|SEARCH t1|^SCAN t1$", text, re.M), text


def test_the_operators_lists_read_in_order_from_an_index(ctx, many):
    from core.find import lists

    op = many.operator
    cases = [
        (lists.ACCOUNTS, lists.accounts_query(op), {"sort": "name"}),
        (lists.ACCOUNTS, lists.accounts_query(op), {"sort": "-name"}),
        (lists.ACCOUNTS, lists.accounts_query(op), {"sort": "-id"}),
        (lists.ACCOUNTS, lists.accounts_query(op), {"parent_id": many.provider.id, "sort": "name"}),
        (lists.USERS, lists.users_query(op), {"sort": "email"}),
        (lists.SUBSCRIPTIONS, lists.subscriptions_query(op), {"sort": "-id"}),
        (lists.SUBSCRIPTIONS, lists.subscriptions_query(op), {"sort": "start"}),
        (lists.INVOICES, lists.invoices_query(op), {}),
        (lists.INVOICES, lists.invoices_query(op), {"sort": "number"}),
        (lists.INVOICES, lists.invoices_query(op), {"sort": "-issued_at"}),
        (lists.INVOICES, lists.invoices_query(op), {"sort": "due_date"}),
        (lists.AUDIT, lists.audit_query(op), {}),
    ]
    for listing, query, raw in cases:
        assert_ordered_by_index(plan(listing, query, op, **raw))


def test_filters_are_found_through_an_index(ctx, many):
    from core.find import lists

    op = many.operator
    for listing, query, raw in [
        (lists.AUDIT, lists.audit_query(op), {"action": "bulk.3"}),
        (lists.AUDIT, lists.audit_query(op), {"account_id": many.customer_a.id}),
        (lists.INVOICES, lists.invoices_query(op), {"account_id": many.customer_a.id}),
    ]:
        text = plan(listing, query, op, **raw)
        if is_postgres():
            assert "Seq Scan" not in text, text
        else:
            assert re.search(r"SEARCH t1 USING (COVERING )?INDEX", text), text


def test_a_customer_admins_lists_use_the_subtree_index(ctx, many):
    from core.find import lists

    user = many.user_a
    text = plan(lists.ACCOUNTS, lists.accounts_query(user), user, sort="name")
    if is_postgres():
        assert "Seq Scan" not in text and "account_path" in text, text
    else:
        assert "USING INDEX account_path" in text or "USING COVERING INDEX account_path" in text
