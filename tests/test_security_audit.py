"""Audit completeness: every kind of change writes exactly one audit entry, in the change's
own transaction.

Each change below is made twice. First while writing the audit entry fails: the change must
leave nothing behind (had it been committed apart from its entry, it would now be a change
without a trace). Then normally: exactly the expected entry is written (one per change; a
top-up, which is a draft and then an issue, writes those two; a payment that settles an
invoice writes the payment's and the invoice's).

The kinds: accounts, reseller profiles and settings, users, roles and their assignments, API
tokens, plugins, licences, the catalog, subscriptions and usage, invoices (draft, edit,
delete, issue, pay, credit, void), payments, refunds, reversals, payment methods and billing
settings, top-ups, wholesale links, billing units, numbers, teams, call records, unit
settings, PSA connections, mappings and company links.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest

from core import audit
from core.models import AuditEntry
from tests.conftest import BUILTIN_PLUGINS, PASSWORD
from tests.test_authz_matrix import FEATURES, PROFILE


class AuditDown(RuntimeError):
    pass


def fingerprint(app) -> str:
    """Every row of every table (login sessions aside: the API client logs in)."""
    db = app.extensions["billhive"].database
    digest = hashlib.sha256()
    for table in sorted(db.get_tables()):
        if table in ("login_session",):
            continue
        rows = db.execute_sql(f'SELECT * FROM "{table}"').fetchall()
        digest.update(table.encode() + json.dumps(sorted(map(repr, rows))).encode())
    return digest.hexdigest()


@pytest.fixture
def fake():
    from tests.fakes.connectwise import FakeConnectWise

    with FakeConnectWise() as server:
        server.add_catalog_item("M365-CW", "Microsoft 365", Decimal("20.00"))
        yield server


class S:
    """What the changes work on, filled in as they go."""


@pytest.fixture
def s(ctx, world, install_license, api, fake):
    from core.billing import catalog
    from core.billing.invoicing import lifecycle as invoices

    host = ctx.extensions["billhive"].host
    install_license(FEATURES)
    for name in BUILTIN_PLUGINS:
        host.set_enabled(name, True)
    state = S()
    state.app, state.world, state.fake = ctx, world, fake
    state.op, state.provider = world.operator, world.provider
    state.api = api(world.operator)  # logged in before anything is counted
    state.reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    product = catalog.create_product(
        None, {"account_id": world.provider.id, "code": "M365", "name": "Microsoft 365"}
    )
    state.plan = catalog.create_plan(
        None, {"product_id": product.id, "name": "Std", "currency": "EUR",
               "recurring_price": "10.00"}
    )  # fmt: skip
    retail = catalog.create_product(
        None, {"account_id": state.reseller.id, "code": "R", "name": "Retail"}
    )
    state.retail = catalog.create_plan(
        None, {"product_id": retail.id, "name": "Retail", "currency": "EUR",
               "recurring_price": "12.00"}
    )  # fmt: skip
    # each issuer's number sequences exist: the first issue creates one in its own step
    first = invoices.create_draft(
        None, world.customer_a, world.provider, [{"description": "x", "unit_price": "1"}]
    )
    invoices.credit_note(invoices.issue(first))
    return state


def _lines(n=1):
    return [{"description": f"Item {i}", "unit_price": "12.50"} for i in range(n)]


# (expected actions, the change); run in this order, each after the ones above it
def changes():
    from core import accounts, license_store, roles, users
    from core.billing import catalog
    from core.billing.invoicing import lifecycle as invoices
    from core.billing.ledger import payments
    from core.billing.models import LedgerEntry
    from plugins.billing_units.service import units
    from plugins.psa_mapping.service import integration as psa
    from plugins.reseller_accounts.service import resellers as resellers
    from plugins.reseller_accounts.service.billing import link_wholesale
    from tests.conftest import issue

    def host(s):
        return s.app.extensions["billhive"].host

    def connection(s):
        f = s.fake
        return {"site_url": f.url, "company_id": f.company_id, "public_key": f.public_key,
                "private_key": f.private_key, "client_id": f.client_id, "timeout": "2",
                "max_retries": "0", "backoff": "0.01"}  # fmt: skip

    return [
        (["account.create"], lambda s: setattr(s, "acc", accounts.create_account(
            s.op, {"name": "Audited", "type": "customer", "parent_id": s.provider.id}))),
        (["account.update"], lambda s: accounts.update_account(s.op, s.acc, {"name": "Audited Ltd"})),
        (["reseller.profile.update"], lambda s: resellers.update_profile(
            s.op, s.reseller, {"customer_billing_cycle_day": 9})),
        (["reseller.settings"], lambda s: resellers.set_allow_sub_resellers(s.op, s.provider, True)),
        (["user.create"], lambda s: setattr(s, "user", users.create_user(
            s.op, {"email": "u@example.com", "password": PASSWORD, "account_id": s.acc.id}))),
        (["role.create"], lambda s: setattr(s, "role", roles.create_role(
            s.op, s.acc, {"name": "Viewer", "description": "v", "privileges": ["users.view"]}))),
        (["role.update"], lambda s: roles.update_role(
            s.op, s.role, {"privileges": ["users.view", "accounts.view"]})),
        (["role.create"], lambda s: setattr(s, "clone", roles.clone_role(s.op, s.role))),
        (["role.assign"], lambda s: roles.assign(s.op, s.role, s.user)),
        (["role.unassign"], lambda s: roles.unassign(s.op, s.role, s.user)),
        (["role.delete"], lambda s: roles.delete_role(s.op, s.clone)),
        (["token.create"], lambda s: setattr(s, "token", users.issue_token(s.user))),
        (["token.revoke"], lambda s: users.revoke_token(s.user, s.token[:10])),
        (["plugin.disable"], lambda s: host(s).set_enabled("role_wizard", False, s.op)),
        (["plugin.enable"], lambda s: host(s).set_enabled("role_wizard", True, s.op)),
        (["license.install"], lambda s: license_store.install(
            issue(s.app.test_license_keys, FEATURES), host(s).license_key_paths, s.op)),
        (["product.create"], lambda s: setattr(s, "product", catalog.create_product(
            s.op, {"code": "GB", "name": "Storage", "unit": "GB", "kind": "usage"}))),
        (["plan.create"], lambda s: setattr(s, "usage_plan", catalog.create_plan(
            s.op, {"product_id": s.product.id, "name": "Per GB", "currency": "EUR",
                   "usage_rate": "0.10"}))),
        (["subscription.create"], lambda s: setattr(s, "sub", catalog.create_subscription(
            s.op, {"account_id": s.acc.id, "plan_id": s.usage_plan.id, "start": "2026-01-01"}))),
        (["usage.import"], lambda s: catalog.insert_usage(catalog.check_usage(
            [{"subscription_id": s.sub.id, "quantity": "5", "date": "2026-01-03",
              "external_id": "u-1"}])[0], actor=s.op)),
        (["invoice.draft"], lambda s: setattr(s, "draft", invoices.create_draft(
            s.op, s.acc, s.provider, _lines()))),
        (["invoice.update"], lambda s: s.api.patch(
            f"/api/v1/invoices/{s.draft.id}", json={"lines": _lines(2)})),
        (["invoice.draft"], lambda s: setattr(s, "doomed", invoices.create_draft(
            s.op, s.acc, s.provider, _lines()))),
        (["invoice.delete"], lambda s: s.api.delete(f"/api/v1/invoices/{s.doomed.id}")),
        (["invoice.issue"], lambda s: setattr(s, "issued", invoices.issue(
            invoices.Invoice.get_by_id(s.draft.id), s.op))),
        (["credit_note.issue"], lambda s: invoices.credit_note(s.issued, s.op, [1])),
        (["invoice.pay"], lambda s: invoices.mark_paid(s.issued, s.op)),
        (["invoice.draft"], lambda s: setattr(s, "second", invoices.create_draft(
            s.op, s.acc, s.provider, _lines()))),
        (["invoice.issue"], lambda s: setattr(s, "second", invoices.issue(s.second, s.op))),
        (["invoice.void"], lambda s: invoices.void(s.second, s.op)),
        (["invoice.draft", "invoice.issue"], lambda s: setattr(s, "topup", payments.create_topup(
            s.op, s.acc, {"amount": "20.00"}))),
        # the payment settles the open top-up: the invoice's change has its own entry
        (["invoice.pay", "payment.record"], lambda s: setattr(s, "payment", payments.record_payment(
            s.op, s.acc, {"amount": "50.00"}))),
        (["refund.record"], lambda s: setattr(s, "refund", payments.record_refund(
            s.op, s.acc, {"amount": "1.00"}))),
        (["ledger.reverse"], lambda s: payments.reverse_entry(
            s.op, s.acc, LedgerEntry.get(LedgerEntry.payment == s.refund.id).id)),
        (["payment_method.add"], lambda s: setattr(s, "method", payments.add_method(
            s.op, s.acc, {"type": "direct_debit", "description": "Bank"}))),
        (["payment_method.remove"], lambda s: payments.remove_method(s.op, s.acc, s.method.id)),
        (["billing.settings"], lambda s: payments.update_settings(
            s.op, s.acc, {"payment_terms_days": "30"})),
        (["reseller.wholesale.link"], lambda s: link_wholesale(s.op, s.retail, s.plan)),
        (["phone_number.create"], lambda s: setattr(s, "number", units.create_number(
            s.op, s.acc, {"e164": "+442079460000"}))),
        (["team.create"], lambda s: setattr(s, "team", units.create_team(
            s.op, s.acc, {"name": "Support", "user_ids": [s.user.id]}))),
        (["team.update"], lambda s: units.update_team(s.op, s.team, {"name": "Support desk"})),
        (["billing_unit.create"], lambda s: setattr(s, "unit", units.create_unit(
            s.op, s.acc, {"name": "Sales", "team_ids": [s.team.id], "number_ids": [s.number.id]}))),
        (["billing_unit.update"], lambda s: units.update_unit(s.op, s.unit, {"name": "Sales EU"})),
        (["billing_units.settings"], lambda s: units.update_settings(
            s.op, s.acc, {"seat_price": "5.00"})),
        (["call_records.import"], lambda s: units.add_calls(s.op, s.acc, [
            {"external_id": "c-1", "number": "+442079460000", "started_at": "2026-01-05T10:00:00",
             "duration_seconds": 60, "cost": "0.42"}])),
        (["billing_unit.delete"], lambda s: units.delete_unit(s.op, s.unit)),
        (["team.delete"], lambda s: units.delete_team(s.op, s.team)),
        (["phone_number.create"], lambda s: setattr(s, "spare", units.create_number(
            s.op, s.acc, {"e164": "+442079460001"}))),
        (["phone_number.delete"], lambda s: units.delete_number(s.op, s.spare)),
        (["connector.settings.save"], lambda s: psa.save_connection(s.op, s.provider, connection(s))),
        (["psa.mapping.create"], lambda s: setattr(s, "mapping", psa.create_mapping(
            s.op, s.provider, {"product_code": "M365", "mapping_type": "per_unit",
                               "psa_product": "M365-CW", "unique_id": "*", "level": 1}))),
        (["psa.mapping.delete"], lambda s: psa.delete_mapping(s.op, s.mapping)),
        (["psa.link.confirm"], lambda s: setattr(s, "link", psa.confirm_link(
            s.op, s.provider, {"customer_id": s.acc.id, "psa_company_id": s.company["id"],
                               "agreement_id": s.agreement["id"]}))),
        (["psa.link.delete"], lambda s: psa.unlink(s.op, s.link)),
    ]  # fmt: skip


def refresh(s) -> None:
    import peewee as pw

    for name, value in list(vars(s).items()):
        if isinstance(value, pw.Model) and value.id is not None:
            fresh = type(value).get_or_none(type(value).id == value.id)
            if fresh is not None:
                setattr(s, name, fresh)


def test_every_change_is_audited_once_in_its_own_transaction(s, license_keys, monkeypatch):
    s.app.test_license_keys = license_keys
    s.company = s.fake.add_company("Audited Holdings", "AUD")
    s.agreement = s.fake.add_agreement(s.company["id"], "MSA")
    real = audit.record
    seen = set()

    def down(*args, **kwargs):
        raise AuditDown("the audit log cannot be written")

    for expected, change in changes():
        label = "+".join(expected)
        # 1. the audit entry cannot be written: the change leaves nothing behind
        before = fingerprint(s.app)
        monkeypatch.setattr(audit, "record", down)
        try:
            result = change(s)
        except AuditDown:
            pass
        else:  # through the API: the failure is an answer
            assert getattr(result, "status_code", None) == 500, f"{label}: {result!r}"
        finally:
            monkeypatch.setattr(audit, "record", real)
        assert fingerprint(s.app) == before, f"{label}: changed something without its entry"
        refresh(s)  # what the failed attempt changed in memory only
        # 2. normally: exactly the expected entries
        last = AuditEntry.select().count()
        result = change(s)
        if hasattr(result, "status_code"):
            assert result.status_code < 400, f"{label}: {result.status_code} {result.get_json()}"
        written = [e.action for e in AuditEntry.select().order_by(AuditEntry.id).offset(last)]
        assert written == expected, f"{label}: wrote {written}"
        seen.update(expected)
    # every action the code base writes is exercised above (refusals aside)
    assert seen >= {"account.create", "invoice.delete", "psa.link.delete", "ledger.reverse"}
