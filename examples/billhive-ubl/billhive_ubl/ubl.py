"""Render Billhive's invoice document (see ``core.billing.invoicing.documents``) as OASIS UBL 2.1.

An invoice becomes an ``Invoice`` document, a credit note a ``CreditNote`` document (whose
quantities and amounts are positive, as UBL wants them, where Billhive stores them negated).
Every amount comes from the integer minor units of the document and the currency's exponent,
never from the formatted strings, so the XML totals are exactly the invoice's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal

from core.kit import exponent

NS = {
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
ET.register_namespace("cac", NS["cac"])
ET.register_namespace("cbc", NS["cbc"])

# UN/ECE Recommendation 20 unit codes for the units Billhive plans commonly use.
UNIT_CODES = {
    "": "C62",
    "h": "HUR",
    "hour": "HUR",
    "hours": "HUR",
    "min": "MIN",
    "minute": "MIN",
    "day": "DAY",
    "days": "DAY",
    "month": "MON",
    "months": "MON",
    "year": "ANN",
    "mb": "4L",
    "gb": "E34",
    "tb": "E35",
}


def _cbc(parent: ET.Element, name: str, text, **attrs) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NS['cbc']}}}{name}", attrs)
    element.text = str(text)
    return element


def _cac(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{NS['cac']}}}{name}")


class _Amounts:
    def __init__(self, currency: str, sign: int):
        self.currency = currency
        self.exp = exponent(currency)
        self.sign = sign

    def money(self, parent: ET.Element, name: str, minor: int) -> None:
        value = Decimal(self.sign * minor).scaleb(-self.exp)
        _cbc(parent, name, f"{value:.{self.exp}f}", currencyID=self.currency)

    def number(self, text: str) -> str:
        return str(Decimal(text) * self.sign)


def _percent(rate: str) -> str:
    value = Decimal(rate.strip().rstrip("%") or "0")
    return format(value.normalize(), "f") if value else "0"


def _tax_category(parent: ET.Element, name: str, percent: str, reason: str = "",
                  reverse_charge: bool = False) -> None:  # fmt: skip
    """UNCL5305 category: S (standard), Z (zero rated) or AE (reverse charge; a tax
    subtotal's category also gives the exemption ``reason``)."""
    category = _cac(parent, name)
    code = "AE" if reverse_charge else ("S" if Decimal(percent) else "Z")
    _cbc(category, "ID", code)
    _cbc(category, "Percent", percent)
    if reverse_charge and reason:
        _cbc(category, "TaxExemptionReasonCode", "VATEX-EU-AE")
        _cbc(category, "TaxExemptionReason", reason)
    _cbc(_cac(category, "TaxScheme"), "ID", "VAT")


def _party(parent: ET.Element, role: str, who: dict) -> None:
    party = _cac(_cac(parent, role), "Party")
    _cbc(_cac(party, "PartyIdentification"), "ID", who["account_ref"])
    _cbc(_cac(party, "PartyName"), "Name", who["name"])
    street = who.get("street") or []
    if who.get("country") or who.get("city"):  # a structured address
        address = _cac(party, "PostalAddress")
        if street:
            _cbc(address, "StreetName", street[0])
        if len(street) > 1:
            _cbc(address, "AdditionalStreetName", street[1])
        if who.get("city"):
            _cbc(address, "CityName", who["city"])
        if who.get("postcode"):
            _cbc(address, "PostalZone", who["postcode"])
        if who.get("region"):
            _cbc(address, "CountrySubentity", who["region"])
        for line in street[2:]:
            _cbc(_cac(address, "AddressLine"), "Line", line)
        if who.get("country"):
            _cbc(_cac(address, "Country"), "IdentificationCode", who["country"])
    elif who.get("address"):
        address = _cac(party, "PostalAddress")
        for line in who["address"]:
            _cbc(_cac(address, "AddressLine"), "Line", line)
    vat_id = who.get("vat_id") or who.get("tax_id")
    if vat_id:
        scheme = _cac(party, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", vat_id)
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")
    legal = _cac(party, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", who["name"])
    if who.get("registration_number"):
        _cbc(legal, "CompanyID", who["registration_number"])
    if who.get("email"):
        _cbc(_cac(party, "Contact"), "ElectronicMail", who["email"])


def _payment(root: ET.Element, payment: dict) -> None:
    """PaymentMeans (58: SEPA credit transfer to the IBAN, else 1: as the text says) and
    PaymentTerms (the free text and the terms in days)."""
    means = _cac(root, "PaymentMeans")
    _cbc(means, "PaymentMeansCode", "58" if payment.get("iban") else "1")
    if payment.get("reference"):
        _cbc(means, "PaymentID", payment["reference"])
    if payment.get("iban"):
        account = _cac(means, "PayeeFinancialAccount")
        _cbc(account, "ID", payment["iban"].replace(" ", ""))
        if payment.get("bic"):
            _cbc(_cac(account, "FinancialInstitutionBranch"), "ID", payment["bic"])
    notes = [payment.get("text") or ""]
    if payment.get("terms_days") is not None:
        notes.append(f"Net {payment['terms_days']} days")
    _cbc(_cac(root, "PaymentTerms"), "Note", ". ".join(n for n in notes if n))


def build(document: dict) -> ET.Element:
    """The UBL document as an ElementTree element (serialise it with :func:`render`)."""
    credit = document.get("kind") == "credit_note"
    kind = "CreditNote" if credit else "Invoice"
    amounts = _Amounts(document["currency"], -1 if credit else 1)
    percent = _percent(document.get("tax_rate") or "0")
    statement = document.get("reverse_charge_statement") or ""

    # the document's own namespace is the default one (xmlns=...), as UBL samples have it;
    # ElementTree's default_namespace option refuses the unqualified attributes UBL uses
    root = ET.Element(kind, {"xmlns": NS[kind]})
    _cbc(root, "UBLVersionID", "2.1")
    _cbc(root, "ID", document["number"])
    _cbc(root, "IssueDate", document["issue_date"])
    if not credit and document.get("due_date"):
        _cbc(root, "DueDate", document["due_date"])
    _cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", 381 if credit else 380)
    if document.get("notes"):
        _cbc(root, "Note", document["notes"])
    if statement:
        _cbc(root, "Note", statement)
    _cbc(root, "DocumentCurrencyCode", document["currency"])
    supply = document.get("supply_period")
    if supply:
        period = _cac(root, "InvoicePeriod")
        _cbc(period, "StartDate", supply["start"])
        _cbc(period, "EndDate", supply["end"])  # both inclusive, as UBL has them
    elif document.get("period_start") and document.get("period_end"):
        period = _cac(root, "InvoicePeriod")
        _cbc(period, "StartDate", document["period_start"])
        last_day = date.fromisoformat(document["period_end"]) - timedelta(days=1)  # end exclusive
        _cbc(period, "EndDate", last_day.isoformat())
    if credit and document.get("credit_note_for"):
        reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(reference, "ID", document["credit_note_for"])
    _party(root, "AccountingSupplierParty", document["issuer"])
    _party(root, "AccountingCustomerParty", document["recipient"])
    if document.get("payment"):
        _payment(root, document["payment"])

    tax_total = _cac(root, "TaxTotal")
    amounts.money(tax_total, "TaxAmount", document["tax_minor"])
    breakdown = document.get("tax_breakdown") or [
        {"rate": document.get("tax_rate") or "0", "taxable_minor": document["subtotal_minor"],
         "tax_minor": document["tax_minor"]}
    ]  # fmt: skip
    for row in breakdown:
        subtotal = _cac(tax_total, "TaxSubtotal")
        amounts.money(subtotal, "TaxableAmount", row["taxable_minor"])
        amounts.money(subtotal, "TaxAmount", row["tax_minor"])
        _tax_category(subtotal, "TaxCategory", _percent(row["rate"]), statement,
                      bool(document.get("reverse_charge")))  # fmt: skip

    totals = _cac(root, "LegalMonetaryTotal")
    amounts.money(totals, "LineExtensionAmount", document["subtotal_minor"])
    amounts.money(totals, "TaxExclusiveAmount", document["subtotal_minor"])
    amounts.money(totals, "TaxInclusiveAmount", document["total_minor"])
    prepaid = (
        0
        if credit
        else document.get("amount_paid_minor", 0) + document.get("credit_applied_minor", 0)
    )
    if prepaid:
        amounts.money(totals, "PrepaidAmount", prepaid)
    amounts.money(totals, "PayableAmount", document["total_minor"] - prepaid)

    for line in document["lines"]:
        row = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")
        _cbc(row, "ID", line["position"])
        if line.get("group"):
            _cbc(row, "Note", line["group"])
        unit = UNIT_CODES.get((line.get("unit") or "").strip().lower(), "C62")
        quantity = "CreditedQuantity" if credit else "InvoicedQuantity"
        _cbc(row, quantity, amounts.number(line["quantity"]), unitCode=unit)
        amounts.money(row, "LineExtensionAmount", line["amount_minor"])
        item = _cac(row, "Item")
        _cbc(item, "Name", line["description"])
        if line.get("product_code"):
            _cbc(_cac(item, "SellersItemIdentification"), "ID", line["product_code"])
        _tax_category(item, "ClassifiedTaxCategory", percent,
                      reverse_charge=bool(document.get("reverse_charge")))  # fmt: skip
        price = _cac(row, "Price")
        _cbc(price, "PriceAmount", line["unit_price"], currencyID=document["currency"])
    return root


def render(document: dict) -> bytes:
    """``InvoiceFormat.render``: the UBL XML document, UTF-8 with an XML declaration."""
    root = build(document)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
