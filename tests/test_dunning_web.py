"""Dunning through its three doors: the API (levels, pause, steps of an invoice, in the
OpenAPI document with their errors), the CLI (`billhive dunning run [--date]`, a future date
refused, progress and summary) and the panel (the Billing page's Dunning sub-tab and the
invoice page; in Chromium: an operator sets a late fee, pauses and resumes a customer)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

import hostapp.cli
from core.billing.invoicing import lifecycle
from core.billing.ledger import dunning
from core.billing.models import DunningLevel, DunningStep, Invoice
from tests.conftest import PASSWORD
from tests.test_cli import cli  # noqa: F401 - the CLI fixture over a fresh instance
from tests.test_dunning import Sent

TODAY = date(2031, 6, 1)


@pytest.fixture
def sent(monkeypatch, ctx):
    monkeypatch.setattr("core.clock.today", lambda: TODAY)
    return Sent()


def overdue(world, account=None, amount="100.00"):
    draft = lifecycle.create_draft(None, account or world.customer_a, world.provider,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    return lifecycle.issue(draft)


def body(**changes):
    rows = [{"level": lv.code, "days": lv.days, "enabled": True, "fee": "0", "fee_currency": "",
             "suspend": False} for lv in dunning.DEFAULT_LEVELS]  # fmt: skip
    for code, values in changes.items():
        next(r for r in rows if r["level"] == code).update(values)
    return {"levels": rows}


# -- API ------------------------------------------------------------------------------------


def test_the_issuers_admin_sets_levels_through_the_api(world, api):
    op = api(world.operator)
    url = f"/api/v1/accounts/{world.provider.id}/dunning/levels"
    got = op.get(url).get_json()
    assert [(lv["level"], lv["days"], lv["fee"]) for lv in got["levels"]] == [
        ("reminder_1", 3, "0"), ("reminder_2", 14, "0"), ("final_notice", 30, "0")]  # fmt: skip
    resp = op.put(url, json=body(final_notice={"fee": "12.50", "fee_currency": "eur",
                                               "suspend": True}))  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    final = resp.get_json()["levels"][2]
    assert (final["fee"], final["fee_minor"], final["fee_currency"], final["suspend"]) == (
        "12.50", 1250, "EUR", True)  # fmt: skip
    assert op.get(url).get_json()["levels"][2]["fee_minor"] == 1250
    from core.models import AuditEntry

    (entry,) = AuditEntry.select().where(AuditEntry.action == "dunning.levels")
    assert entry.actor_id == world.operator.id
    assert entry.before["final_notice"]["fee"] == 0 and entry.after["final_notice"]["fee"] == 1250


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(reminder_2={"days": 2}), "levels.1.days"),
        (body(reminder_1={"fee": "-5", "fee_currency": "EUR"}), "levels.0.fee"),
        (body(reminder_1={"fee": "1", "fee_currency": "EURO"}), "levels.0.fee_currency"),
        ({"levels": body()["levels"][:2]}, "levels"),
        ({"levels": "all"}, "levels"),
        ({}, "levels"),
    ],
)
def test_bad_levels_answer_422_naming_the_field(world, api, payload, field):
    resp = api(world.operator).put(f"/api/v1/accounts/{world.provider.id}/dunning/levels",
                                   json=payload)  # fmt: skip
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"], resp.get_json()
    assert DunningLevel.select().count() == 0


def test_other_tenants_answer_404_and_customers_cannot_set_levels(world, api):
    a = api(world.user_a)
    assert a.get(f"/api/v1/accounts/{world.customer_b.id}/dunning").status_code == 404
    assert a.post(f"/api/v1/accounts/{world.customer_b.id}/dunning/pause",
                  json={}).status_code == 404  # fmt: skip
    assert a.put(f"/api/v1/accounts/{world.customer_a.id}/dunning/levels",
                 json=body()).status_code == 403  # fmt: skip
    resp = a.post(f"/api/v1/accounts/{world.customer_a.id}/dunning/pause", json={})
    assert resp.status_code == 403 and dunning.pause_of(world.customer_a) is None
    inv = overdue(world, world.customer_b)
    assert a.get(f"/api/v1/invoices/{inv.id}/dunning").status_code == 404


def test_pause_resume_and_the_steps_of_an_invoice_through_the_api(world, api, sent):
    inv = overdue(world)
    op = api(world.operator)
    base = f"/api/v1/accounts/{world.customer_a.id}/dunning"
    resp = op.post(f"{base}/pause", json={"reason": "promised to pay on Friday"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["paused"] and resp.get_json()["paused_by"] == world.operator.email
    assert op.post(f"{base}/pause", json={}).status_code == 409
    dunning.run(inv.due_date + timedelta(days=5))
    assert op.get(f"/api/v1/invoices/{inv.id}/dunning").get_json() == {
        "invoice_id": inv.id, "paused": True, "steps": []}  # fmt: skip
    assert op.post(f"{base}/resume").get_json()["paused"] is False
    assert op.post(f"{base}/resume").status_code == 409
    dunning.run(inv.due_date + timedelta(days=5))
    got = api(world.user_a).get(f"/api/v1/invoices/{inv.id}/dunning").get_json()
    ((step,),) = [got["steps"]]
    assert (step["level"], step["days_overdue"], step["status"]) == ("reminder_1", 5, "done")
    assert step["mail_status"].startswith("failed: ")  # customer A has no billing e-mail
    assert step["run_date"] == (inv.due_date + timedelta(days=5)).isoformat()


def test_the_openapi_document_lists_dunning_with_its_errors(world, api):
    doc = api(world.operator).get("/api/v1/openapi.json").get_json()
    put = doc["paths"]["/api/v1/accounts/{account_id}/dunning/levels"]["put"]
    assert {"200", "403", "404", "422"} <= set(put["responses"])
    steps = doc["paths"]["/api/v1/invoices/{invoice_id}/dunning"]["get"]
    assert {"200", "404"} <= set(steps["responses"])
    pause = doc["paths"]["/api/v1/accounts/{account_id}/dunning/pause"]["post"]
    assert {"200", "403", "404", "409", "422"} <= set(pause["responses"])


# -- CLI ------------------------------------------------------------------------------------


def test_billhive_dunning_run_sends_the_reminder_and_refuses_a_future_date(cli):  # noqa: F811
    cli.ok("init", "--operator-email", "op@example.com", "--operator-password", PASSWORD)
    app = hostapp.cli.get_app()
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        from core import accounts
        from core.models import Account

        provider = Account.get(Account.parent.is_null())
        customer = accounts.create_account(None, {"name": "Late Payer", "type": "customer",
                                                  "parent_id": provider.id})  # fmt: skip
        inv = lifecycle.issue(lifecycle.create_draft(
            None, customer, provider, [{"description": "Service", "unit_price": "9.99"}]))  # fmt: skip
        due = inv.due_date
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    result = cli("dunning", "run", "--date", tomorrow)
    assert result.exit_code == 2 and "after today" in result.output
    result = cli("dunning", "run", "--date", "2031-02-30")
    assert result.exit_code == 2 and "--date" in result.output
    day = (due + timedelta(days=4)).isoformat()
    if due + timedelta(days=4) > date.today():  # never after today: move the invoice back
        with app.app_context(), app.extensions["billhive"].database.connection_context():
            Invoice.update(due_date=date.today() - timedelta(days=4)).where(
                Invoice.id == inv.id).execute()  # fmt: skip
        day = date.today().isoformat()
    out = cli.ok("dunning", "run", "--date", day)
    assert "1 step(s): 1 reminder 1, 0 reminder 2, 0 final notice" in out and inv.number in out
    again = cli.ok("dunning", "run", "--date", day, "--json")
    assert '"steps": []' in again
    # the operator's shell pauses and resumes (audited), and shows an issuer's levels
    assert "paused" in cli.ok("dunning", "pause", str(customer.id), "--reason", "on holiday")
    result = cli("dunning", "pause", str(customer.id))
    assert result.exit_code == 1 and "already paused" in result.output
    assert "resumed" in cli.ok("dunning", "resume", str(customer.id))
    assert cli("dunning", "resume", "999999").exit_code == 1
    assert "Final notice: due + 30 days" in cli.ok("dunning", "levels", str(provider.id))
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        from core.mail.models import MailMessage

        mails = MailMessage.select().where(MailMessage.event_key.startswith("dunning:"))
        from core.models import AuditEntry

        actions = [e.action for e in AuditEntry.select().where(
            AuditEntry.action.startswith("dunning.")).order_by(AuditEntry.id)]  # fmt: skip
        assert actions == ["dunning.pause", "dunning.resume"]
        assert [(m.event_key, m.subject) for m in mails] == [
            (f"dunning:{inv.id}:reminder_1", f"Reminder: invoice {inv.number} is overdue")
        ]


# -- panel ----------------------------------------------------------------------------------


def test_the_dunning_subtab_saves_levels_and_keeps_bad_values(world, panel):
    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/billing/dunning"
    page = client.get(url)
    assert page.status_code == 200 and b"Dunning levels" in page.data
    form = {"form": "levels", "reminder_1_enabled": "1", "reminder_1_days": "5",
            "reminder_2_enabled": "1", "reminder_2_days": "4", "final_notice_enabled": "1",
            "final_notice_days": "40", "final_notice_fee": "7.5",
            "final_notice_fee_currency": "EUR", "final_notice_suspend": "1"}  # fmt: skip
    bad = client.post(url, data=form)
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Second reminder, days after due" in text
    assert 'value="7.5"' in text and "levels.1" not in text  # kept, and said in people's words
    form["reminder_2_days"] = "20"
    assert client.post(url, data=form).status_code == 302
    levels = dunning.levels_of(world.provider)
    assert [lv.days for lv in levels] == [5, 20, 40] and levels[2].fee == 750 and levels[2].suspend


def test_a_customer_sees_its_dunning_but_cannot_pause_it(world, panel):
    client = panel(world.user_a)
    page = client.get(f"/accounts/{world.customer_a.id}/billing/dunning")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Pause dunning" not in text
    assert "Dunning levels" not in text  # a customer issues no invoices
    resp = client.post(f"/accounts/{world.customer_a.id}/billing/dunning", data={"form": "pause"})
    assert resp.status_code == 422 and dunning.pause_of(world.customer_a) is None
    assert client.get(f"/accounts/{world.customer_b.id}/billing/dunning").status_code == 404


@pytest.mark.browser
def test_an_operator_sets_a_late_fee_pauses_a_customer_and_sees_the_steps(
    world, live_server, page, sent
):
    inv = overdue(world)
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server}/accounts/{world.provider.id}")
    page.click(".tabs >> text=Billing")
    page.click(".billing-subtabs >> text=Dunning")
    row = page.locator("#dunning-levels tr[data-level=final_notice]")
    row.locator("input[name=final_notice_fee]").fill("15.00")
    row.locator("input[name=final_notice_fee_currency]").fill("EUR")
    page.click("#dunning-levels-form button[type=submit]")
    assert "Dunning levels saved." in page.locator(".flash").first.inner_text()
    assert dunning.levels_of(world.provider)[2].fee == 1500

    page.goto(f"{live_server}/accounts/{world.customer_a.id}")
    page.click(".tabs >> text=Billing")
    page.click(".billing-subtabs >> text=Dunning")
    page.fill("#f-reason", "disputed")
    page.click("#dunning-pause-form button[type=submit]")
    assert "disputed" in page.locator("#dunning-pause").inner_text()
    dunning.run(inv.due_date + timedelta(days=31))
    assert sent == []
    page.click("#dunning-resume-form button[type=submit]")
    assert "paused" not in page.locator("#dunning-pause .badge").inner_text()
    dunning.run(inv.due_date + timedelta(days=31))
    fee = Invoice.get_by_id(DunningStep.get(invoice=inv.id).fee_invoice_id)

    page.goto(f"{live_server}/billing/invoices/{inv.id}")
    steps = page.locator("#dunning-steps tr[data-level=final_notice]")
    assert "Final notice" in steps.inner_text() and fee.number in steps.inner_text()
    assert "no valid billing e-mail" in steps.locator(".mail-status").inner_text()
    steps.locator(f"text={fee.number}").click()
    assert fee.number in page.locator("h1").inner_text()


# -- the demo (issue 19 item 7) ---------------------------------------------------------------


@pytest.fixture
def demo_app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


def test_the_demo_has_an_overdue_invoice_whose_reminder_a_dunning_run_sends(demo_app):
    from hostapp.demo import load_demo

    database = demo_app.extensions["billhive"].database
    with demo_app.app_context(), database.connection_context():
        from core.mail.models import MailMessage
        from core.models import Account

        load_demo(demo_app, lambda *a: None)
        load_demo(demo_app, lambda *a: None)  # idempotent: still one overdue invoice
        contoso = Account.get(Account.name == "Contoso Ltd")
        overdue = list(Invoice.select().where((Invoice.account == contoso.id)
                                              & (Invoice.due_date < date.today())))  # fmt: skip
        assert len(overdue) == 1 and overdue[0].status == "issued"
        summary = dunning.run()
        assert [(s["number"], s["level"]) for s in summary["steps"]] == [
            (overdue[0].number, "reminder_1")]  # fmt: skip
        mail = MailMessage.get(MailMessage.event_key == f"dunning:{overdue[0].id}:reminder_1")
        assert (mail.event, mail.invoice_id) == ("reminder_1", overdue[0].id)
        assert mail.recipients == ["ap@contoso.example"] and mail.status == "sent"
        assert mail.subject == f"Reminder: invoice {overdue[0].number} is overdue"
        assert f"was due on {overdue[0].due_date} and 540.00 EUR is still open" in mail.body
        assert dunning.run()["steps"] == []  # nothing twice
