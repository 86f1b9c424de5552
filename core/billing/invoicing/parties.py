"""The parties of an invoice: each account's billing details, an issuer's payment
instructions, and what an issued invoice keeps of both (EU VAT Directive article 226).

**Billing details** (:class:`BillingDetails`, one row per account, none until first saved):
the legal name printed on invoices (the account's name when empty), a postal address (street
lines, postcode, city, region, country as ISO 3166-1 alpha-2, checked with pycountry), the
VAT ID (``stdnum.eu.vat`` for the EU member states, python-stdnum's own module for other
countries that have one, else a generic shape check; stored compact, e.g. ``DE136695976``),
the company registration number, the billing e-mail addresses (one or more) and the invoice
language (:data:`SUPPORTED_LOCALES`).

**Payment instructions** (issuers only: the provider and resellers): IBAN and BIC (checked with
schwifty) or free text, default payment terms in days (:data:`DEFAULT_TERMS_DAYS` when not
set) and the payment reference rule, a template of ``{number}`` (the invoice number),
``{account_ref}`` (the buyer's reference, ``A-<id>``) and ``{issue_year}``.

**Who edits.** Billing details follow the account's own details: whoever may edit the account
(``accounts.manage`` on it, within the caller's subtree, 404 outside) edits them, the
account's own admins included. Payment instructions are where the issuer's customers send
their money, so only the issuer's **own** admins (``accounts.manage`` on their own account)
and the operator's shell set them: the account above a reseller (the provider) sees them but
cannot redirect the reseller's customers' payments (403). This is the reverse of the billing
terms rule (:func:`core.accounts.require_billing_terms`: terms are the seller's to set).

**Snapshot at issue.** The transaction that issues an invoice (bill run, a draft issued by
hand, a credit note) writes one :class:`InvoiceParties` row: the seller and the buyer as
:func:`party` gives them then, the seller's :func:`payment_instructions` with the reference
made for this invoice, and the tax decision (:mod:`core.billing.invoicing.tax`). An issued invoice's
document is built from that row only, so a later change of address never alters it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date

import peewee as pw
import pycountry
from marshmallow import Schema, ValidationError, fields
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.util import clean

from core import audit, rbac
from core.billing.models import BillingSettings, Invoice
from core.db import BaseModel, JSONField, lock_row, utcnow, write_transaction
from core.errors import Forbidden, ValidationFailed, field_messages
from core.fields import Email, Text
from core.i18n import SUPPORTED_LOCALES
from core.models import Account, User

#: Payment terms (net days) when neither the buyer's payment settings nor the issuer's
#: payment instructions set them.
DEFAULT_TERMS_DAYS = 14
MAX_TERMS_DAYS = 365
MAX_EMAILS = 10
REFERENCE_FIELDS = ("number", "account_ref", "issue_year")
DEFAULT_REFERENCE = "{number}"
#: EU member states as VAT IDs name them (stdnum.eu.vat: Greece is "EL" there, "GR" in
#: ISO 3166; "XI" is Northern Ireland's goods-only prefix)
EU_VAT_PREFIXES = {code.upper() for code in eu_vat.MEMBER_STATES} | {"EL"}
_VAT_TO_ISO = {"EL": "GR", "XI": "GB"}

#: What users see for each field (the panel's labels), in messages.
LABELS = {
    "legal_name": "Legal name",
    "street": "Street",
    "postcode": "Postcode",
    "city": "City",
    "region": "Region",
    "country": "Country",
    "vat_id": "VAT ID",
    "registration_number": "Registration number",
    "billing_emails": "Billing e-mails",
    "invoice_language": "Invoice language",
    "iban": "IBAN",
    "bic": "BIC",
    "payment_text": "Payment instructions",
    "payment_terms_days": "Payment terms (days)",
    "payment_reference": "Payment reference",
}
PAYMENT_FIELDS = ("iban", "bic", "payment_text", "payment_terms_days", "payment_reference")
ISSUER_LEVELS = ("provider", "reseller")


class BillingDetails(BaseModel):
    """An account's billing identity (see the module doc); ``account`` is unique."""

    account = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    legal_name = pw.CharField(max_length=200, default="")
    street = pw.TextField(default="")  # up to 3 lines
    postcode = pw.CharField(max_length=20, default="")
    city = pw.CharField(max_length=100, default="")
    region = pw.CharField(max_length=100, default="")
    country = pw.CharField(max_length=2, default="")  # ISO 3166-1 alpha-2
    vat_id = pw.CharField(max_length=20, default="")  # compact, with its country prefix
    registration_number = pw.CharField(max_length=60, default="")
    billing_emails = JSONField(default=list)
    invoice_language = pw.CharField(max_length=10, default="en")
    iban = pw.CharField(max_length=34, default="")  # compact
    bic = pw.CharField(max_length=11, default="")
    payment_text = pw.TextField(default="")
    payment_terms_days = pw.IntegerField(null=True)  # None: DEFAULT_TERMS_DAYS
    payment_reference = pw.CharField(max_length=100, default=DEFAULT_REFERENCE)
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_details"


class InvoiceParties(BaseModel):
    """What an invoice carried when it was issued: ``seller`` and ``buyer`` (:func:`party`),
    ``payment`` (:func:`payment_instructions` with this invoice's reference; None on credit
    notes) and ``tax`` ({rule, rate, reverse_charge}, :mod:`core.billing.invoicing.tax`). Written once,
    in the issuing transaction; never changed."""

    invoice = pw.ForeignKeyField(Invoice, unique=True, backref="+", on_delete="CASCADE")
    seller = JSONField()
    buyer = JSONField()
    payment = JSONField(null=True)
    tax = JSONField()
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "invoice_parties"


# -- input -----------------------------------------------------------------------------------


class BillingDetailsInput(Schema):
    legal_name = Text(200, metadata={"description": "the name printed on invoices"})
    street = Text(300, multiline=True, metadata={"description": "street lines (at most 3)"})
    postcode = Text(20)
    city = Text(100)
    region = Text(100)
    country = Text(2, card_numbers=False,
                   metadata={"description": "ISO 3166-1 alpha-2 code", "example": "DE"})  # fmt: skip
    vat_id = Text(20, card_numbers=False, metadata={"example": "DE136695976"})
    registration_number = Text(60, card_numbers=False, metadata={"example": "HRB 12345"})
    billing_emails = fields.List(Email(), metadata={"description": f"1-{MAX_EMAILS} addresses"})
    invoice_language = fields.String(metadata={"enum": list(SUPPORTED_LOCALES)})
    iban = Text(42, card_numbers=False, metadata={"example": "DE89370400440532013000"})
    bic = Text(11, card_numbers=False, metadata={"example": "COBADEFFXXX"})
    payment_text = Text(1000, multiline=True)
    payment_terms_days = fields.Raw(allow_none=True,
                                    metadata={"type": "integer", "minimum": 0,
                                              "maximum": MAX_TERMS_DAYS, "nullable": True,
                                              "description": "net days; null = default"})  # fmt: skip
    payment_reference = Text(100, card_numbers=False,
                             metadata={"example": "{number}/{account_ref}"})  # fmt: skip


def _country(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"'{code}' is not an ISO 3166 country code (two letters, e.g. DE)")
    return code


def country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code) if code else None
    return getattr(found, "common_name", None) or (found.name if found else "")


def vat_country(vat_id: str) -> str | None:
    """The ISO country of an EU VAT ID (its prefix; EL -> GR); None for other IDs."""
    prefix = vat_id[:2].upper()
    if prefix in EU_VAT_PREFIXES:
        return _VAT_TO_ISO.get(prefix, prefix)
    return None


def check_vat_id(value: str, country: str) -> str:
    """The compact VAT ID, or ValueError saying what is wrong. An EU number carries its
    country prefix (added from ``country`` when typed without it)."""
    text = value.strip()
    if not text:
        return ""
    compact = clean(text, " -./,").upper()
    eu_country = country in {_VAT_TO_ISO.get(p, p) for p in EU_VAT_PREFIXES}
    if compact[:2].isalpha() and compact[:2].upper() in EU_VAT_PREFIXES:
        pass
    elif eu_country:
        compact = ("EL" if country == "GR" else country) + compact
    if compact[:2].upper() in EU_VAT_PREFIXES:
        try:
            return eu_vat.validate(compact)
        except StdnumError as exc:
            raise ValueError(f"'{text}' is not a valid EU VAT ID ({exc.message.lower()})") from None
    module = get_cc_module(country.lower(), "vat") if country else None
    if module is not None:
        try:
            return module.validate(text)
        except StdnumError as exc:
            name = country_name(country)
            raise ValueError(f"'{text}' is not a valid VAT ID of {name} "
                             f"({exc.message.lower()})") from None  # fmt: skip
    generic = "".join(ch for ch in text.upper() if ch.isalnum())
    if (
        not 4 <= len(generic) <= 20
        or not any(ch.isdigit() for ch in generic)
        or any(ch not in string.ascii_uppercase + string.digits for ch in generic)
    ):
        raise ValueError(f"'{text}' does not look like a tax ID (4-20 letters and digits)")
    return generic


def _reference(template: str) -> str:
    try:
        names = [name for _, name, spec, conv in string.Formatter().parse(template)
                 if name is not None]  # fmt: skip
    except ValueError:
        raise ValueError("unbalanced braces: use {number}, {account_ref} or {issue_year}") from None
    unknown = sorted({n for n in names if n not in REFERENCE_FIELDS})
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}: use {{number}}, "
                         "{account_ref} or {issue_year}")  # fmt: skip
    if "number" not in names:
        raise ValueError("must contain {number}, so each payment names its invoice")
    return template


def _terms(value) -> int | None:
    if value in ("", None):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) > MAX_TERMS_DAYS:
        raise ValueError(f"must be a whole number of days, 0-{MAX_TERMS_DAYS}")
    return int(text)


def _emails(value) -> list | str:
    """The panel sends one text (addresses separated by commas or lines); the API a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").replace("\n", ",").split(",")
                if part.strip()]  # fmt: skip
    return value


def is_issuer(account: Account) -> bool:
    """The provider and resellers issue invoices (and so have payment instructions)."""
    return rbac.level_of(account) in ISSUER_LEVELS


def validate(account: Account, payload: dict, current: BillingDetails) -> dict:
    """The fields of ``payload`` checked and normalised, every problem reported at once
    (422 naming each field as users see it). Fields left out are not in the result."""
    payload = dict(payload or {})
    if "billing_emails" in payload:
        payload["billing_emails"] = _emails(payload["billing_emails"])
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(payload) - set(LABELS))
    for name in unknown:
        errors[name] = ["is not a billing detail"]
    known = {k: v for k, v in payload.items() if k in LABELS}
    try:
        data = BillingDetailsInput().load(known)
    except ValidationError as err:
        errors.update(field_messages(err.messages))
        data = {k: v for k, v in (err.valid_data or {}).items() if k not in errors}
    for name in ("legal_name", "street", "postcode", "city", "region", "registration_number",
                 "payment_text", "iban", "bic", "payment_reference"):  # fmt: skip
        if name in data:
            data[name] = data[name].strip()

    def check(name, fn):
        if name in data:
            try:
                data[name] = fn(data[name])
            except ValueError as exc:
                errors[name] = [str(exc)]
                del data[name]

    check("country", lambda v: _country(v) if v.strip() else "")
    country = data.get("country", current.country) if "country" not in errors else ""
    check("vat_id", lambda v: check_vat_id(v, country))
    check("street", _street)
    check("payment_terms_days", _terms)
    check("payment_reference", lambda v: _reference(v) if v else DEFAULT_REFERENCE)
    check("iban", _iban)
    check("bic", _bic)
    check("billing_emails", _email_list)
    check("invoice_language", _language)
    check("registration_number", _registration)
    if any(name in payload for name in PAYMENT_FIELDS) and not is_issuer(account):
        for name in PAYMENT_FIELDS:
            if name in payload:
                errors.setdefault(name, []).append(
                    "only the provider and resellers issue invoices and have payment instructions"
                )
    bic = data.get("bic", current.bic)
    iban = data.get("iban", current.iban)
    if bic and not iban and "iban" not in errors and "bic" not in errors:
        errors["iban"] = ["is needed with a BIC"]
    if errors:
        raise ValidationFailed(
            "invalid billing details — "
            + ", ".join(f"{LABELS.get(k, k)}: {'; '.join(v)}" for k, v in errors.items()),
            errors,
        )
    return data


def _street(value: str) -> str:
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if len(lines) > 3:
        raise ValueError("at most 3 lines")
    return "\n".join(lines)


def _iban(value: str) -> str:
    if not value:
        return ""
    try:
        return IBAN(value).compact
    except SchwiftyException as exc:
        raise ValueError(f"'{value}' is not a valid IBAN ({str(exc).lower()})") from None


def _bic(value: str) -> str:
    if not value:
        return ""
    try:
        return str(BIC(value))
    except SchwiftyException as exc:
        raise ValueError(f"'{value}' is not a valid BIC ({str(exc).lower()})") from None


def _email_list(value: list) -> list:
    out = []
    for address in value:
        address = address.strip().lower()
        if address and address not in out:
            out.append(address)
    if len(out) > MAX_EMAILS:
        raise ValueError(f"at most {MAX_EMAILS} addresses")
    return out


def _language(value: str) -> str:
    code = (value or "").strip().lower() or "en"
    if code not in SUPPORTED_LOCALES:
        raise ValueError(f"'{value}' is not an invoice language (one of: "
                         f"{', '.join(SUPPORTED_LOCALES)})")  # fmt: skip
    return code


def _registration(value: str) -> str:
    if value and not all(ch.isalnum() or ch in " -./" for ch in value):
        raise ValueError("letters, digits, spaces and - . / only")
    return " ".join(value.split())


# -- reading and editing -----------------------------------------------------------------------


def details_of(account: Account) -> BillingDetails:
    """The account's billing details; an unsaved empty row when it has none yet."""
    found = BillingDetails.get_or_none(BillingDetails.account == account.id)
    return found or BillingDetails(account=account.id)


def _snapshot(d: BillingDetails) -> dict:
    return {name: getattr(d, name) for name in LABELS}


def require_payment_instructions(actor, account: Account, changed: list[str]) -> None:
    """Payment instructions are the issuer's own admins' (see the module doc)."""
    if actor is None or not changed:
        return
    if account.id != actor.account_id:
        labels = ", ".join(LABELS[name] for name in changed)
        raise Forbidden(
            f"{labels}: an issuer's payment instructions are set by its own admins",
            {name: ["is set by the account's own admins"] for name in changed},
        )


def update(actor, account: Account, payload: dict) -> BillingDetails:
    """Change ``account``'s billing details (the fields ``payload`` names; PATCH semantics).
    ``actor=None`` is the operator's shell. One transaction, audited."""
    if actor is not None:
        rbac.require(actor, "accounts.manage", account)
    current = details_of(account)
    data = validate(account, payload, current)
    changed_payment = [n for n in PAYMENT_FIELDS if n in data and data[n] != getattr(current, n)]
    require_payment_instructions(actor, account, changed_payment)
    # the account's row lock (SQLite: the write lock, BEGIN IMMEDIATE): two editors, one after
    # the other, each changing the fields it sent of the row as the other left it
    with write_transaction():
        lock_row(Account, account.id)
        details = details_of(account)
        before = _snapshot(details) if details.id else None
        for key, value in data.items():
            setattr(details, key, value)
        details.updated_by, details.updated_at = actor, utcnow()
        details.save()
        audit.record(actor, "account.billing_details", details, object_type="billingdetails",
                     account=account.id, before=before, after=_snapshot(details))  # fmt: skip
    return details


# -- what an invoice carries -------------------------------------------------------------------


def _address_lines(d: BillingDetails, account: Account) -> list[str]:
    if not (d.street or d.city or d.postcode or d.country):
        # no structured address yet: the account's free-text address, as before
        return [line.strip() for line in (account.address or "").splitlines() if line.strip()]
    lines = [line for line in d.street.splitlines() if line.strip()]
    town = " ".join(part for part in (d.postcode, d.city) if part)
    if d.region:
        town = f"{town}, {d.region}" if town else d.region
    if town:
        lines.append(town)
    if d.country:
        lines.append(country_name(d.country))
    return lines


_UNREAD = object()


def billing_emails(account: Account, details: BillingDetails | None = None,
                   settings=_UNREAD) -> list[str]:  # fmt: skip
    """Where the account's invoices go: its billing e-mails, else the invoice e-mail of its
    payment settings, else the account's e-mail. ``settings``: its BillingSettings row (or
    None) when the caller has read it."""
    d = details or details_of(account)
    if d.billing_emails:
        return list(d.billing_emails)
    if settings is _UNREAD:
        settings = BillingSettings.get_or_none(BillingSettings.account == account.id)
    if settings is not None and settings.invoice_email:
        return [settings.invoice_email]
    return [account.email] if account.email else []


@dataclass
class Known:
    """What an invoice of ``seller`` to ``buyer`` needs of both accounts, read at once
    (:func:`read`): their billing details and their payment settings (None where none)."""

    seller: BillingDetails
    buyer: BillingDetails
    settings: dict = field(default_factory=dict)  # account id -> BillingSettings


def read(issuer: Account, buyer: Account) -> Known:
    """Both parties' details and settings in two queries (the bill run's hot path)."""
    ids = [issuer.id, buyer.id]
    rows = {d.account_id: d for d in BillingDetails.select().where(BillingDetails.account.in_(ids))}
    settings = {
        s.account_id: s for s in BillingSettings.select().where(BillingSettings.account.in_(ids))
    }
    return Known(
        seller=rows.get(issuer.id) or BillingDetails(account=issuer.id),
        buyer=rows.get(buyer.id) or BillingDetails(account=buyer.id),
        settings=settings,
    )


def party(account: Account, details: BillingDetails | None = None, settings=_UNREAD) -> dict:
    """The account as an invoice names it: ``name`` (legal name), ``address`` (lines, the
    country's name last), ``street``/``postcode``/``city``/``region``, ``country`` (ISO code,
    "" unknown), ``country_name``, ``vat_id``, ``tax_id`` (the same), ``registration_number``,
    ``email`` (the first billing e-mail), ``emails``, ``account_ref``, ``language``."""
    d = details or details_of(account)
    emails = billing_emails(account, d, settings)
    return {
        "name": d.legal_name or account.name,
        "address": _address_lines(d, account),
        "street": [line for line in d.street.splitlines() if line.strip()],
        "postcode": d.postcode,
        "city": d.city,
        "region": d.region,
        "country": d.country,
        "country_name": country_name(d.country),
        "vat_id": d.vat_id,
        "tax_id": d.vat_id,
        "registration_number": d.registration_number,
        "email": emails[0] if emails else "",
        "emails": emails,
        "account_ref": f"A-{account.id}",
        "language": d.invoice_language or "en",
    }


def terms_days(issuer: Account, buyer: Account, known: Known | None = None) -> int:
    """Net days: the buyer's own payment terms (its payment settings, set by the seller)
    where set, else the issuer's default terms (its payment instructions), else 14."""
    known = known or read(issuer, buyer)
    own = known.settings.get(buyer.id)
    if own is not None and own.payment_terms_days is not None:
        return own.payment_terms_days
    issuer_terms = known.seller.payment_terms_days
    return DEFAULT_TERMS_DAYS if issuer_terms is None else issuer_terms


def payment_instructions(issuer: Account, details: BillingDetails | None = None) -> dict:
    """The issuer's payment instructions: ``iban`` (grouped in fours), ``bic``, ``text``,
    ``reference_rule`` (the template), ``terms_days`` (the issuer's default)."""
    d = details or details_of(issuer)
    return {
        "iban": IBAN(d.iban).formatted if d.iban else "",
        "bic": d.bic,
        "text": d.payment_text,
        "reference_rule": d.payment_reference or DEFAULT_REFERENCE,
        "terms_days": DEFAULT_TERMS_DAYS if d.payment_terms_days is None else d.payment_terms_days,
    }


def payment_reference(rule: str, number: str, account_ref: str, issued: date) -> str:
    return (rule or DEFAULT_REFERENCE).format(
        number=number, account_ref=account_ref, issue_year=issued.year
    )


def record_issue(invoice, issuer: Account, buyer: Account, tax: dict,
                 known: Known | None = None) -> InvoiceParties:  # fmt: skip
    """Write the invoice's :class:`InvoiceParties` row; call in the issuing transaction, once
    the invoice has its number and due date. ``tax`` is :func:`core.billing.invoicing.tax.decide`'s
    record (a credit note passes its invoice's); ``known``: :func:`read`, when the caller has
    it."""
    known = known or read(issuer, buyer)
    seller = known.seller
    payment = None
    if invoice.kind == "invoice":
        payment = payment_instructions(issuer, seller)
        issued = invoice.issued_at.date() if invoice.issued_at else date.today()
        payment["reference"] = payment_reference(
            payment["reference_rule"], invoice.number, f"A-{buyer.id}", issued
        )
        payment["terms_days"] = (invoice.due_date - issued).days if invoice.due_date else None
    row = InvoiceParties.create(
        invoice=invoice.id,
        seller=party(issuer, seller, known.settings.get(issuer.id)),
        buyer=party(buyer, known.buyer, known.settings.get(buyer.id)),
        payment=payment,
        tax=tax,
    )
    invoice.parties_record = row  # what the document is built from, without reading it back
    return row


def recorded(invoice) -> InvoiceParties | None:
    """The parties ``invoice`` was issued with; None for drafts (and invoices issued before
    the parties were kept)."""
    known = getattr(invoice, "parties_record", None)
    if known is not None or not invoice.id:
        return known
    return InvoiceParties.get_or_none(InvoiceParties.invoice == invoice.id)


def backfill(migrator=None, db=None) -> int:
    """Core migration 4: invoices issued before the parties were kept get them as the accounts
    are at the upgrade (the closest to what they said), so no later change alters them.
    Their tax decision is what they charged (rule ``"unknown"``, no reverse charge recorded).
    A no-op on a new database. Returns how many invoices it gave parties."""
    missing = (
        Invoice.select()
        .join(InvoiceParties, pw.JOIN.LEFT_OUTER, on=(InvoiceParties.invoice == Invoice.id))
        .where(Invoice.status.in_(("issued", "paid", "void")) & InvoiceParties.id.is_null())
        .order_by(Invoice.id)
    )
    invoices = list(missing)
    if not invoices:
        return 0
    ids = {i.account_id for i in invoices} | {i.issuer_id for i in invoices}
    accounts = {a.id: a for a in Account.select().where(Account.id.in_(list(ids)))}
    details = {d.account_id: d for d in BillingDetails.select().where(
        BillingDetails.account.in_(list(ids)))}  # fmt: skip
    settings = {s.account_id: s for s in BillingSettings.select().where(
        BillingSettings.account.in_(list(ids)))}  # fmt: skip

    def known(account_id):
        return details.get(account_id) or BillingDetails(account=account_id)

    parties_of = {}
    for account_id in ids:
        parties_of[account_id] = party(accounts[account_id], known(account_id),
                                       settings.get(account_id))  # fmt: skip
    rows = []
    for invoice in invoices:
        payment = None
        if invoice.kind == "invoice":
            payment = payment_instructions(accounts[invoice.issuer_id], known(invoice.issuer_id))
            issued = invoice.issued_at.date() if invoice.issued_at else invoice.created_at.date()
            payment["reference"] = payment_reference(payment["reference_rule"], invoice.number,
                                                     f"A-{invoice.account_id}", issued)  # fmt: skip
            payment["terms_days"] = (invoice.due_date - issued).days if invoice.due_date else None
        rows.append({
            "invoice": invoice.id, "seller": parties_of[invoice.issuer_id],
            "buyer": parties_of[invoice.account_id], "payment": payment,
            "tax": {"rule": "unknown", "rate": invoice.tax_rate, "reverse_charge": False},
            "created_at": utcnow(),
        })  # fmt: skip
    for chunk in pw.chunked(rows, 500):
        InvoiceParties.insert_many(chunk).execute()
    return len(rows)


PARTY_MODELS = [BillingDetails, InvoiceParties]
