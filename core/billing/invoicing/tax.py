"""Which tax an invoice charges: the one rule, used wherever an invoice is rated (bill runs in
:mod:`core.billing.runs.engine`, including the provider's wholesale invoices to resellers that
``plugins.reseller_accounts`` charges through it, and drafts in :mod:`core.billing.invoicing.lifecycle`).

In this order:

1. **Reverse charge**: the buyer has a valid VAT ID of an EU member state
   (:class:`core.billing.invoicing.parties.BillingDetails`), the seller is established in an EU member
   state (the country of its own VAT ID, else of its address) and the two countries differ:
   no tax (rate 0), and the document carries :data:`REVERSE_CHARGE_STATEMENT`. A seller
   whose country is not known never reverse-charges.
2. **The buyer's rate**: the billed account's own ``tax_rate`` (set by the account above it,
   a billing term) where it is set; ``0``, the default, means "not set".
3. **The issuer's rate** otherwise (the seller's own ``tax_rate``).

Tax is then computed once per invoice on the subtotal (:func:`core.billing.money.invoice_totals`).
A draft is rated again when it is issued (the parties may have changed meanwhile); a credit
note keeps the rate and the reverse charge of the invoice it credits.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from core.billing.invoicing import parties
from core.models import Account

REVERSE_CHARGE_STATEMENT = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)"
)
#: ISO 3166 codes of the EU member states
EU_COUNTRIES = {
    parties._VAT_TO_ISO.get(code, code) for code in parties.EU_VAT_PREFIXES if code != "XI"
}


def _set_rate(text: str | None) -> str | None:
    try:
        rate = Decimal(text or "0")
    except InvalidOperation:
        return None
    return str(rate) if rate > 0 else None


def seller_country(details: parties.BillingDetails) -> str:
    return (parties.vat_country(details.vat_id) if details.vat_id else None) or details.country


def decide(issuer: Account, buyer: Account, known: parties.Known | None = None) -> dict:
    """``{"rule": "reverse_charge" | "buyer" | "issuer", "rate": "<percent>",
    "reverse_charge": bool}`` for an invoice of ``issuer`` to ``buyer`` (module doc).
    ``known``: both parties as :func:`core.billing.invoicing.parties.read` gives them, when at hand."""
    known = known or parties.read(issuer, buyer)
    seller, billed = known.seller, known.buyer
    buyer_vat_country = parties.vat_country(billed.vat_id) if billed.vat_id else None
    home = seller_country(seller)
    if buyer_vat_country in EU_COUNTRIES and home in EU_COUNTRIES and buyer_vat_country != home:
        return {"rule": "reverse_charge", "rate": "0", "reverse_charge": True}
    own = _set_rate(buyer.tax_rate)
    if own is not None:
        return {"rule": "buyer", "rate": own, "reverse_charge": False}
    return {"rule": "issuer", "rate": issuer.tax_rate or "0", "reverse_charge": False}


def of_credit_note(credited) -> dict:
    """A credit note's tax: its invoice's, as recorded at issue."""
    recorded = parties.recorded(credited)
    if recorded is not None:
        return dict(recorded.tax)
    return {"rule": "issuer", "rate": credited.tax_rate, "reverse_charge": False}
