"""The invoice formats are the issuer's choice (issue 15, reproduction 7): a reseller whose
profile says Customer Invoice Type PDF (or RAW, or Both) has exactly those files rendered,
stored, listed in the API's ``files``, offered in the panel and downloadable; any other
format answers 404 and is never rendered on demand. The provider's own invoices carry every
enabled format."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from core.billing.models import Invoice, InvoiceFile
from core.billing.runs import engine
from tests.billing_support import setup_catalog, subscribe
from tests.conftest import PASSWORD

FEATURE = "FT-3001.007"
AS_OF = date(2026, 2, 1)


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


@pytest.fixture
def enabled(ctx, install_license):
    host = ctx.extensions["billhive"].host
    install_license([FEATURE])
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("invoice_pdf", True)
    return ctx


def reseller_with_customer(world, name, invoice_type):
    """A reseller whose profile says ``invoice_type``, with a customer on its own plan (and
    a Full Access user there) billed for January by a bill run."""
    reseller = world.add_account(
        world.provider,
        name,
        "reseller",
        invoice_prefix=f"{name[:2].upper()}-",
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": invoice_type,
            "customer_billing_cycle_day": 1,
        },
    )
    _, plan = setup_catalog(reseller, price="10.00", code=f"R{invoice_type}")
    customer = world.add_account(reseller, f"{name} Customer")
    subscribe(customer, plan, start="2026-01-01")
    user = world.add_user(customer, f"{invoice_type.lower()}@customer.example")
    return reseller, customer, user


def stored(invoice) -> list[str]:
    return sorted(f.format for f in InvoiceFile.select().where(InvoiceFile.invoice == invoice.id))


def stored_on_disk(app, invoice) -> list[str]:
    folder = Path(app.config["STORAGE_DIR"]) / "invoices"
    return sorted(p.suffix for p in folder.rglob(f"{invoice.number}.*"))


@pytest.fixture
def billed(enabled, world):
    """Three resellers (PDF, RAW, Both) and the provider's own customer, billed once."""
    out = {t: reseller_with_customer(world, f"{t.title()} Reseller", t) for t in
           ("PDF", "RAW", "BOTH")}  # fmt: skip
    _, plan = setup_catalog(world.provider, price="30.00")
    subscribe(world.customer_a, plan, start="2026-01-01")
    summary = engine.run(AS_OF)
    assert not summary["failures"] and not summary["render_errors"], summary
    invoices = {
        t: Invoice.get(Invoice.account == customer.id) for t, (_, customer, _) in out.items()
    }
    invoices["provider"] = Invoice.get(Invoice.account == world.customer_a.id)
    return out, invoices


WANTED = {"PDF": ["PDF"], "RAW": ["RAW"], "BOTH": ["PDF", "RAW"], "provider": ["PDF", "RAW"]}


def test_api_lists_and_serves_only_the_formats_the_issuer_chose(billed, api, world, ctx):
    resellers, invoices = billed
    for kind, invoice in invoices.items():
        user = world.user_a if kind == "provider" else resellers[kind][2]
        client = api(user)
        assert stored(invoice) == WANTED[kind], kind  # rendered and stored: just these
        body = client.get(f"/api/v1/invoices/{invoice.id}").get_json()
        assert sorted(u.rsplit("/", 1)[1] for u in body["files"]) == WANTED[kind], kind
        listed = client.get("/api/v1/invoices").get_json()
        assert [sorted(u.rsplit("/", 1)[1] for u in i["files"]) for i in listed] == [WANTED[kind]]
        for code in ("PDF", "RAW"):
            resp = client.get(f"/api/v1/invoices/{invoice.id}/files/{code}")
            if code in WANTED[kind]:
                assert resp.status_code == 200, (kind, code)
                media = "application/pdf" if code == "PDF" else "text/csv"
                assert resp.mimetype == media
            else:
                assert resp.status_code == 404, (kind, code, resp.get_data(as_text=True))
                assert resp.get_json()["code"] == "not_found"
                assert f"no {code} file" in resp.get_json()["message"]
        # asking for the other format created nothing
        assert stored(invoice) == WANTED[kind], kind
        assert len(stored_on_disk(ctx, invoice)) == len(WANTED[kind]), kind


def test_a_missing_wanted_file_is_rendered_on_download_but_no_other(billed, api, ctx):
    resellers, invoices = billed
    invoice = invoices["PDF"]
    InvoiceFile.delete().where(InvoiceFile.invoice == invoice.id).execute()  # render failed
    client = api(resellers["PDF"][2])
    assert client.get(f"/api/v1/invoices/{invoice.id}/files/RAW").status_code == 404
    assert stored(invoice) == []
    assert client.get(f"/api/v1/invoices/{invoice.id}/files/PDF").status_code == 200
    assert stored(invoice) == ["PDF"]


def test_the_panel_offers_only_the_issuers_formats(billed, panel):
    resellers, invoices = billed
    for kind in ("PDF", "RAW", "BOTH"):
        invoice = invoices[kind]
        client = panel(resellers[kind][2])
        html = client.get(f"/billing/invoices/{invoice.id}").get_data(as_text=True)
        offered = re.findall(r">Download (\w+)</a>", html)
        assert sorted(offered) == WANTED[kind], kind
        for code in ("PDF", "RAW"):
            resp = client.get(f"/billing/invoices/{invoice.id}/files/{code}")
            assert resp.status_code == (200 if code in WANTED[kind] else 404), (kind, code)
        assert stored(invoice) == WANTED[kind], kind


def test_a_manual_invoice_of_a_reseller_follows_its_profile(billed, api, world):
    from core.billing.invoicing import lifecycle

    resellers, _ = billed
    reseller, customer, user = resellers["RAW"]
    draft = lifecycle.create_draft(
        None, customer, reseller, [{"description": "Setup", "unit_price": "25.00"}]
    )
    invoice = lifecycle.issue(draft, None)
    assert stored(invoice) == ["RAW"]
    body = api(user).get(f"/api/v1/invoices/{invoice.id}").get_json()
    assert [u.rsplit("/", 1)[1] for u in body["files"]] == ["RAW"]
    assert api(user).get(f"/api/v1/invoices/{invoice.id}/files/PDF").status_code == 404


@pytest.mark.browser
def test_a_customer_of_a_pdf_only_reseller_downloads_the_pdf_and_nothing_else(
    billed, live_server, page
):
    resellers, invoices = billed
    invoice = invoices["PDF"]
    user = resellers["PDF"][2]
    page.goto(f"{live_server}/login")
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    page.goto(f"{live_server}/billing/invoices/{invoice.id}")
    downloads = page.locator("a:text-matches('^Download ')")
    assert downloads.all_inner_texts() == ["Download PDF"]
    with page.expect_download() as info:
        downloads.first.click()
    assert info.value.suggested_filename == f"{invoice.number}.pdf"
    assert page.goto(f"{live_server}/billing/invoices/{invoice.id}/files/RAW").status == 404
    assert stored(invoice) == ["PDF"]
