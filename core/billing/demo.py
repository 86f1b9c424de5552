"""Demo billing data (idempotent): Contoso Ltd subscribes to 3 cloud seats at 25.00 EUR and
uses storage at 0.05 EUR/GB (0.04 above 500 GB) from the first day of last month, so
``billhive bill-run`` on any day from the 1st of this month on bills last month:
3 x 25.00 + 600 GB x 0.04 = 99.00 EUR, plus 20 % tax (Contoso's own rate) = 118.80 EUR.

The demo's accounts have billing details (:data:`DEMO_PARTIES`, :func:`load_parties_demo`):
the provider in Berlin with a German VAT ID and a bank account; Northwind Reseller in Vienna
with an Austrian VAT ID, so the provider's wholesale invoices to it are reverse-charged; its
customer Fabrikam Retail in Vienna (German invoices); Contoso Ltd in Munich. VAT IDs carry
valid check digits (python-stdnum) but are made up; the IBANs are the banks' published examples."""

from __future__ import annotations

from datetime import date

from core.billing import catalog
from core.billing.invoicing import parties
from core.billing.models import PricePlan, Product, Subscription, UsageRecord
from core.models import Account


def first_of_last_month(today: date | None = None) -> date:
    today = today or date.today()
    return date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)


def load_billing_demo(provider: Account, customer: Account, echo=print) -> Subscription:
    if provider.tax_rate in ("", "0"):
        Account.update(tax_rate="20").where(Account.id == provider.id).execute()
    product = Product.get_or_none(account=provider.id, code="CLOUD") or catalog.create_product(
        None, {"account_id": provider.id, "code": "CLOUD", "name": "Cloud workspace",
               "unit": "seat", "kind": "recurring"})  # fmt: skip
    storage = Product.get_or_none(account=provider.id, code="STORAGE") or catalog.create_product(
        None, {"account_id": provider.id, "code": "STORAGE", "name": "Storage",
               "unit": "GB", "kind": "usage"})  # fmt: skip
    seat_plan = PricePlan.get_or_none(product=product.id, name="Cloud seat EUR") or \
        catalog.create_plan(None, {"product_id": product.id, "name": "Cloud seat EUR",
                                   "currency": "EUR", "recurring_price": "25.00"})  # fmt: skip
    storage_plan = PricePlan.get_or_none(product=storage.id, name="Storage EUR") or \
        catalog.create_plan(None, {"product_id": storage.id, "name": "Storage EUR",
                                   "currency": "EUR", "usage_rate": "0.05",
                                   "tiers": [[500, "0.05"], [None, "0.04"]]})  # fmt: skip
    start = first_of_last_month()
    subs = {}
    for plan, quantity, ext in (
        (seat_plan, "3", "demo-seats"),
        (storage_plan, "1", "demo-storage"),
    ):
        sub = Subscription.get_or_none(account=customer.id, external_id=ext)
        if sub is None:
            sub = catalog.create_subscription(None, {"account_id": customer.id, "plan_id": plan.id,
                                                     "quantity": quantity, "start": start,
                                                     "external_id": ext})  # fmt: skip
            echo(f"Subscribed {customer.name} to {plan.name} from {start}")
        subs[ext] = sub
    rows = [{"subscription_id": subs["demo-storage"].id, "quantity": q,
             "date": start.replace(day=d).isoformat(), "external_id": f"demo-usage-{d}"}
            for d, q in ((3, "250"), (12, "200"), (25, "150"))]  # fmt: skip
    good, bad = catalog.check_usage(rows)
    inserted, _ = catalog.insert_usage(good)
    if inserted:
        echo(f"Recorded {inserted} usage records (600 GB) for {customer.name}")
    assert UsageRecord.select().where(UsageRecord.account == customer.id).count() >= 3
    return subs["demo-seats"]


DEMO_PARTIES = {
    "Billhive Demo Provider": {
        "legal_name": "Billhive Demo GmbH", "street": "Friedrichstraße 123",
        "postcode": "10117", "city": "Berlin", "country": "DE", "vat_id": "DE136695976",
        "registration_number": "HRB 123456 B", "billing_emails": ["billing@demo.billhive.test"],
        "iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "payment_terms_days": 14,
        "payment_reference": "{number}/{account_ref}",
    },
    "Northwind Reseller": {
        "legal_name": "Northwind Telecom GmbH", "street": "Mariahilfer Straße 45",
        "postcode": "1060", "city": "Wien", "country": "AT", "vat_id": "ATU12345675",
        "registration_number": "FN 123456a", "billing_emails": ["ap@northwind.example"],
        "invoice_language": "de", "iban": "AT611904300234573201",
        "payment_text": "Bitte geben Sie die Rechnungsnummer als Verwendungszweck an.",
    },
    "Fabrikam Retail": {
        "legal_name": "Fabrikam Handels GmbH", "street": "Landstraßer Hauptstraße 7",
        "postcode": "1030", "city": "Wien", "country": "AT", "vat_id": "ATU23456784",
        "billing_emails": ["rechnung@fabrikam.example"], "invoice_language": "de",
    },
    "Contoso Ltd": {
        "legal_name": "Contoso Deutschland GmbH", "street": "Leopoldstraße 200",
        "postcode": "80804", "city": "München", "country": "DE", "vat_id": "DE812345673",
        "registration_number": "HRB 98765", "billing_emails": ["ap@contoso.example"],
    },
}  # fmt: skip


def load_parties_demo(accounts: list[Account], echo=print) -> None:
    """Give each demo account its :data:`DEMO_PARTIES` details, once: details already saved
    (the demo run before, or someone edited them) are left as they are."""
    for account in accounts:
        data = DEMO_PARTIES.get(account.name)
        if data is None or parties.BillingDetails.get_or_none(account=account.id) is not None:
            continue
        parties.update(None, account, data)
        echo(f"Billing details for {account.name}: {data['city']}, VAT ID {data['vat_id']}")


OVERDUE_DAYS = 5  # the demo's overdue invoice is due this many days before the demo is loaded


def load_dunning_demo(provider: Account, customer: Account, echo=print) -> None:
    """One overdue invoice, so that ``billhive dunning run`` sends its first reminder: an
    onboarding workshop (450.00 EUR) billed to ``customer`` as if issued ``terms +
    OVERDUE_DAYS`` days ago (what an instance holds after that time): due
    ``OVERDUE_DAYS`` days ago, past the first dunning level (due + 3 days), not the second.
    Issued through the normal path (number, ledger, files, its own e-mail); only the clock the
    issue reads is set back. Idempotent: a second load finds it by its product code."""
    from datetime import timedelta

    from core.billing.invoicing import lifecycle
    from core.billing.models import Invoice, InvoiceLine
    from core.db import utcnow

    made = (
        InvoiceLine.select(InvoiceLine.id)
        .join(Invoice)
        .where((Invoice.account == customer.id) & (InvoiceLine.product_code == "DEMO-ONBOARD"))
        .exists()
    )
    if made:
        return
    days = parties.terms_days(provider, customer) + OVERDUE_DAYS
    draft = lifecycle.create_draft(None, customer, provider, [{
        "description": "Onboarding workshop (one day)", "unit_price": "450.00",
        "product_code": "DEMO-ONBOARD"}])  # fmt: skip
    issued_at = utcnow() - timedelta(days=days)
    real_clock = lifecycle.utcnow
    lifecycle.utcnow = lambda: issued_at  # the demo's history: issued `days` days ago
    try:
        invoice = lifecycle.issue(draft)
    finally:
        lifecycle.utcnow = real_clock
    echo(f"Issued {invoice.number} to {customer.name} {days} days ago: overdue since "
         f"{invoice.due_date} (billhive dunning run sends its reminder)")  # fmt: skip
