"""rbac.in_subtree, the one definition of a subtree, is a range on the materialized path: it
must select exactly the accounts at or below one, also where ids share leading digits (/1/2/
and /1/20/), on SQLite and PostgreSQL, and use an index."""

from __future__ import annotations

from core import rbac
from core.db import database, is_postgres
from core.models import Account

PROFILE = {"customer_invoice_creation": True, "customer_invoice_type": "RAW",
           "customer_billing_cycle_day": 1}  # fmt: skip


def test_subtree_is_exactly_the_accounts_below(ctx, world, install_license):
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    accounts = [world.provider, world.customer_a, world.customer_b]
    # enough accounts that ids share leading digits (2 and 20-29, 3 and 30-39, ...), with
    # resellers holding customers one level further down
    resellers = [
        world.add_account(world.provider, f"R{n}", "reseller", profile=PROFILE) for n in range(3)
    ]
    accounts += resellers
    for n in range(30):
        parent = resellers[n % 3] if n % 2 else world.provider
        child = world.add_account(parent, f"C{n}")
        accounts.append(child)
        if n % 5 == 0:
            accounts.append(world.add_account(parent, f"C{n}-sibling"))
    ids = {a.id for a in accounts}
    assert {i for i in ids if i >= 10} and {i for i in ids if i < 10}
    for top in accounts:
        expected = {a.id for a in accounts if a.path.startswith(top.path)}
        found = {a.id for a in Account.select(Account.id).where(rbac.in_subtree(top))}
        assert found == expected, top.path
        strict = {a.id for a in Account.select(Account.id).where(rbac.in_subtree(top, strict=True))}
        assert strict == expected - {top.id}, top.path


def test_subtree_query_uses_an_index(world):
    query = Account.select(Account.id).where(rbac.in_subtree(world.customer_a))
    sql, params = query.sql()
    if is_postgres():
        database.execute_sql("SET enable_seqscan = off")  # a tiny table: make the plan tell
        plan = " ".join(r[0] for r in database.execute_sql("EXPLAIN " + sql, params))
        database.execute_sql("RESET enable_seqscan")
        assert "account_path_bytes" in plan, plan
    else:
        plan = " ".join(r[-1] for r in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING COVERING INDEX account_path" in plan, plan
