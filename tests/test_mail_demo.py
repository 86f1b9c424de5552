"""The demo (issue 19 item 7): its bill run puts its invoices into the outbox, each once, from
the issuer to the buyer's billing e-mail with the PDF; a re-run adds nothing."""

from __future__ import annotations

from datetime import date

import pytest

from core.billing.models import Invoice
from core.billing.runs import engine
from core.models import Account
from tests.mail_support import outbox_files, parse


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


def test_the_demo_bill_run_puts_its_invoices_into_the_outbox_once(ctx):
    from hostapp.demo import load_demo

    said = []
    load_demo(ctx, said.append)
    assert any("outbox folder" in line for line in said)
    summary = engine.run(date.today())
    assert summary["invoices_created"] >= 1 and not summary["failures"]
    engine.run(date.today())  # the re-run invoices and mails nothing
    issued = list(Invoice.select().where(Invoice.status != "draft"))
    mails = {parse(p.read_bytes())["Subject"]: parse(p.read_bytes()) for p in outbox_files(ctx)}
    assert len(outbox_files(ctx)) == len(issued) == len(mails)
    contoso = Account.get(Account.name == "Contoso Ltd")
    inv = next(i for i in issued if i.account_id == contoso.id and i.total == 11880)  # the run's
    mail = next(m for s, m in mails.items() if inv.number in s)
    assert mail["To"] == "ap@contoso.example"
    assert mail["From"].addresses[0].addr_spec == "billing@demo.billhive.test"
    assert "118.80" in mail.get_body(("plain",)).get_content()
    [pdf] = list(mail.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content()[:5] == b"%PDF-"
