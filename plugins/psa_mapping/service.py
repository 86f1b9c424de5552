"""What the panel, the API, the CLI and the hooks of psa_mapping all call.

Every function that takes an ``actor`` checks privileges and scoping through ``core.rbac``
(outside the caller's subtree = 404). ``actor=None`` is the operator's shell (CLI, hooks).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import logging
import os
import re
from decimal import Decimal, InvalidOperation

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, has_app_context
from marshmallow import Schema, ValidationError, fields, validate

from core import audit, outbound, rbac
from core.api.schemas import UtcDateTime
from core.db import database, utcnow
from core.errors import BillhiveError, NotFound, ValidationFailed, marshmallow_errors
from core.fields import MAX_INT32, Id, Text
from core.models import Account
from plugins.psa_mapping.connectwise import (
    CONFIRM_WINDOW,
    RETRY_AFTER_MAX,
    ConnectWiseClient,
    ConnectWiseError,
    ConnectWiseSettings,
)
from plugins.psa_mapping.models import (
    ALL_PLANS,
    MAPPING_TYPES,
    CompanyLink,
    PsaConnection,
    PsaMapping,
    SyncItem,
    SyncRun,
)

log = logging.getLogger("billhive.psa")
PLUGIN_NAME = "psa_mapping"
INTEGRATION_LEVELS = ("provider", "reseller")
SECRET_FIELDS = ("public_key", "private_key", "client_id")
DONE = ("created", "updated", "unchanged")
#: Items a sync pushes (again): new ones, failed ones, and uncertain ones (a POST whose
#: answer was lost and whose addition did not show up in time: resolved by key).
PUSH_AGAIN = ("pending", "failed", "uncertain")
#: Operator settings (config key, environment variable, default seconds).
CLIENT_SETTINGS = {
    "retry_after_max": ("PSA_RETRY_AFTER_MAX", "BILLHIVE_PSA_RETRY_AFTER_MAX", RETRY_AFTER_MAX),
    "confirm_window": ("PSA_CONFIRM_SECONDS", "BILLHIVE_PSA_CONFIRM_SECONDS", CONFIRM_WINDOW),
}
_VERSION_RE = re.compile(r"v?\d{1,6}(?:\.\d{1,8}){0,4}")


class PsaError(BillhiveError):
    """ConnectWise could not do what was asked; the message says why."""

    status = 502
    code = "psa_error"


def psa_error(exc: ConnectWiseError) -> PsaError:
    # a silent port and a closed one answer alike (core.outbound): one kind for both
    kind = "connection" if exc.kind == "timeout" else exc.kind
    return PsaError(f"ConnectWise: {exc.message}", {"connectwise": [kind]})


# -- access ------------------------------------------------------------------------------------


def integration_account(actor, account_id, privilege: str) -> Account:
    """The provider/reseller account whose integration is asked for, checked for ``actor``."""
    if actor is None:
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
    else:
        account = rbac.get_account(actor, account_id)
    if rbac.level_of(account) not in INTEGRATION_LEVELS:
        raise NotFound(f"account {account_id} has no PSA integration (customers are linked)")
    if actor is not None:
        rbac.require(actor, privilege, account)
    return account


def require_licensed() -> None:
    rbac.host().require_licensed(PLUGIN_NAME)


# -- secrets -----------------------------------------------------------------------------------


def _fernet() -> Fernet:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    key = base64.urlsafe_b64encode(hashlib.sha256(b"billhive-psa:" + secret).digest())
    return Fernet(key)


def _encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def _decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise PsaError(
            "the stored ConnectWise keys cannot be read (the instance's secret key changed): "
            "enter the public key, private key and client id again"
        ) from None


# -- connection settings -----------------------------------------------------------------------


class ConnectionSettingsSchema(Schema):
    """ConnectWise connection settings. Keys are write-only: answers show them masked."""

    site_url = Text(
        2000,
        card_numbers=False,
        required=True,
        metadata={"label": "Site URL", "description": "e.g. https://api-na.myconnectwise.net"},
    )
    company_id = Text(100, card_numbers=False, required=True, metadata={"label": "Company ID"})
    public_key = Text(200, card_numbers=False, load_only=True, metadata={"label": "Public key"})
    private_key = Text(200, card_numbers=False, load_only=True,
                       metadata={"label": "Private key"})  # fmt: skip
    client_id = Text(200, card_numbers=False, load_only=True, metadata={"label": "Client ID"})
    timeout = fields.Float(load_default=10.0, metadata={"label": "Timeout (s)"})
    max_retries = fields.Integer(load_default=3, metadata={"label": "Max retries"})
    backoff = fields.Float(load_default=0.5, metadata={"label": "Backoff (s)"})


class ConnectionOut(Schema):
    account_id = fields.Integer()
    site_url = fields.String()
    company_id = fields.String()
    public_key = fields.String(metadata={"description": "masked"})
    private_key = fields.String(metadata={"description": "masked"})
    client_id = fields.String(metadata={"description": "masked"})
    timeout = fields.Float()
    max_retries = fields.Integer()
    backoff = fields.Float()
    last_test_at = UtcDateTime(allow_none=True)
    last_test_ok = fields.Boolean(allow_none=True)
    last_test_message = fields.String()


def get_connection(account: Account) -> PsaConnection | None:
    return PsaConnection.get_or_none(PsaConnection.account == account.id)


def settings_of(conn: PsaConnection) -> ConnectWiseSettings:
    return ConnectWiseSettings(
        site_url=conn.site_url,
        company_id=conn.company_id,
        public_key=_decrypt(conn.public_key_enc),
        private_key=_decrypt(conn.private_key_enc),
        client_id=_decrypt(conn.client_id_enc),
        timeout=conn.timeout,
        max_retries=conn.max_retries,
        backoff=conn.backoff,
    )


def masked(conn: PsaConnection | None) -> dict | None:
    if conn is None:
        return None
    out = settings_of(conn).masked()
    out.update(
        account_id=conn.account_id,
        last_test_at=conn.last_test_at,
        last_test_ok=conn.last_test_ok,
        last_test_message=conn.last_test_message,
    )
    return out


def build_settings(payload: dict, existing: PsaConnection | None = None) -> ConnectWiseSettings:
    """Validate ``payload`` into settings; blank keys keep the stored ones. Raises
    ValidationFailed naming every bad field; touches nothing."""
    try:
        data = ConnectionSettingsSchema().load(
            {k: v for k, v in (payload or {}).items() if k in ConnectionSettingsSchema().fields}
        )
    except ValidationError as err:
        raise marshmallow_errors(err) from None
    for name in SECRET_FIELDS:
        value = (data.get(name) or "").strip()
        if not value and existing is not None:
            value = _decrypt(getattr(existing, f"{name}_enc"))
        data[name] = value
    settings = ConnectWiseSettings(
        site_url=(data.get("site_url") or "").strip(),
        company_id=(data.get("company_id") or "").strip(),
        public_key=data["public_key"],
        private_key=data["private_key"],
        client_id=data["client_id"],
        timeout=data["timeout"],
        max_retries=data["max_retries"],
        backoff=data["backoff"],
    )
    problems = settings.validate()
    if problems:
        raise ValidationFailed(
            "invalid ConnectWise settings — " + "; ".join(problems.values()),
            {k: [v] for k, v in problems.items()},
        )
    return settings


def save_connection(actor, account: Account, payload: dict) -> PsaConnection:
    existing = get_connection(account)
    settings = build_settings(payload, existing)  # raises before anything is written
    with database.atomic():
        conn = existing or PsaConnection(account=account)
        before = masked(existing) if existing else None
        conn.site_url = settings.base_url
        conn.company_id = settings.company_id
        conn.public_key_enc = _encrypt(settings.public_key)
        conn.private_key_enc = _encrypt(settings.private_key)
        conn.client_id_enc = _encrypt(settings.client_id)
        conn.timeout = float(settings.timeout)
        conn.max_retries = int(settings.max_retries)
        conn.backoff = float(settings.backoff)
        conn.updated_at = utcnow()
        conn.updated_by = actor
        conn.last_test_at = conn.last_test_ok = None
        conn.last_test_message = ""
        conn.save()
        after = settings.masked()
        audit.record(
            actor,
            "psa.connection.save",
            conn,
            account=account,
            before=_jsonable(before),
            after=_jsonable(after),
        )
    return conn


def _jsonable(d: dict | None) -> dict | None:
    return None if d is None else {k: str(v) if v is not None else None for k, v in d.items()}


def client_options() -> dict[str, float]:
    """``retry_after_max`` and ``confirm_window`` from the app config or the environment
    (docs/operations.md): the longest Retry-After honoured, and how long an addition
    whose POST timed out is looked for before its item is left uncertain."""
    out = {}
    for name, (key, env, default) in CLIENT_SETTINGS.items():
        value = current_app.config.get(key) if has_app_context() else None
        if value is None:
            value = os.environ.get(env) or default
        try:
            out[name] = max(0.0, float(value))
        except (TypeError, ValueError):
            raise ValueError(f"{env} must be a number of seconds, got {value!r}") from None
    return out


def new_client(settings: ConnectWiseSettings) -> ConnectWiseClient:
    """A client for tenant-set settings: guarded by core.outbound, operator timings."""
    return ConnectWiseClient(settings, **client_options())


def client_for(conn: PsaConnection) -> ConnectWiseClient:
    return new_client(settings_of(conn))


def require_connection(account: Account) -> PsaConnection:
    conn = get_connection(account)
    if conn is None:
        raise ValidationFailed.field(
            "connection", f"{account.name} has no ConnectWise connection: save its settings first"
        )
    return conn


def run_test(settings: ConnectWiseSettings) -> tuple[bool, str]:
    """``(ok, message)`` for a person: what worked, or what to fix.

    Nothing the remote end said is echoed: ConnectWise's refusals of the keys or the
    client id give our own sentences, every other failure (refused by the outbound guard,
    DNS, closed, silent or open port, TLS, not ConnectWise) the one message of
    ``core.outbound``; a version is shown only when it looks like one."""
    try:
        with new_client(settings) as client:
            info = client.test_connection()
    except ConnectWiseError as exc:
        if exc.kind in ("auth", "bad_request") and exc.status in (400, 401, 403):
            return False, f"Connection failed: {exc.plain}"
        return False, f"Connection failed: {outbound.UNREACHABLE}"
    version = str(info.get("version") or "")
    if not _VERSION_RE.fullmatch(version):
        version = "(unknown version)"
    return True, (
        f"Connected to ConnectWise Manage {version} "
        f"at {settings.base_url} as company '{settings.company_id}'."
    )


def test_connection(actor, account: Account, payload: dict | None = None) -> tuple[bool, str]:
    """Test the stored settings (or unsaved ones in ``payload``, stored keys filling blanks).
    The stored connection remembers the last result."""
    existing = get_connection(account)
    if payload:
        settings = build_settings(payload, existing)
    else:
        settings = settings_of(require_connection(account))
    ok, message = run_test(settings)
    if existing is not None and not payload:
        existing.last_test_at = utcnow()
        existing.last_test_ok = ok
        existing.last_test_message = message
        existing.save()
    return ok, message


# -- catalog (Billhive services and the PSA catalog) -------------------------------------------


def billing_models():
    from core.billing import models as billing

    return billing


def services_of(account: Account) -> list:
    """Products of the account's own catalog: the services that can be billed."""
    Product = billing_models().Product
    return list(Product.select().where(Product.account == account.id).order_by(Product.code))


def service(account: Account, code: str):
    Product = billing_models().Product
    product = Product.get_or_none((Product.account == account.id) & (Product.code == code))
    if product is None:
        raise NotFound(f"service {code} not found in {account.name}'s catalog")
    return product


def plan_choices(product) -> list[tuple[str, str]]:
    """The Unique ID/Plan choices of a service: every plan, or one price plan."""
    PricePlan = billing_models().PricePlan
    plans = PricePlan.select().where(PricePlan.product == product.id).order_by(PricePlan.name)
    return [(ALL_PLANS, "All plans")] + [(str(p.id), f"{p.name} ({p.currency})") for p in plans]


def psa_catalog(account: Account, search: str | None = None) -> list[dict]:
    conn = require_connection(account)
    try:
        with client_for(conn) as client:
            items = client.catalog_items(search or None)
    except ConnectWiseError as exc:
        raise psa_error(exc) from None
    return [
        {
            "identifier": str(i.get("identifier") or ""),
            "description": str(i.get("description") or ""),
            "price": str(i.get("price") if i.get("price") is not None else ""),
        }
        for i in items
        if not i.get("inactiveFlag")
    ]


# -- mappings ----------------------------------------------------------------------------------


class MappingInput(Schema):
    product_code = Text(60, min_length=1, required=True, card_numbers=False)
    mapping_type = fields.String(required=True, validate=validate.OneOf(list(MAPPING_TYPES)))
    psa_product = Text(100, min_length=1, required=True, card_numbers=False)
    unique_id = Text(100, min_length=1, load_default=ALL_PLANS, card_numbers=False)
    level = fields.Integer(
        required=True,
        strict=False,
        validate=validate.Range(min=0, max=1_000_000, error="Level must be a whole number ≥ 0"),
    )


class MappingOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    product_code = fields.String()
    mapping_type = fields.String()
    psa_product = fields.String()
    psa_product_name = fields.String()
    unique_id = fields.String()
    level = fields.Integer()
    source = fields.String()
    read_only = fields.Boolean()
    created_at = UtcDateTime()


def mappings_of(account: Account, product_code: str | None = None) -> list[PsaMapping]:
    query = PsaMapping.select().where(PsaMapping.account == account.id)
    if product_code is not None:
        query = query.where(PsaMapping.product_code == product_code)
    return list(query.order_by(PsaMapping.product_code, PsaMapping.unique_id, PsaMapping.id))


def create_mapping(actor, account: Account, payload: dict) -> PsaMapping:
    require_licensed()
    try:
        data = MappingInput().load(payload or {})
    except ValidationError as err:
        raise marshmallow_errors(err) from None
    product = service(account, data["product_code"])
    plans = dict(plan_choices(product))
    if data["unique_id"] not in plans:
        raise ValidationFailed.field(
            "unique_id", f"{data['unique_id']!r} is not a plan of service {product.code}"
        )
    conn = require_connection(account)
    try:
        with client_for(conn) as client:
            item = client.catalog_item(data["psa_product"])
    except ConnectWiseError as exc:
        if exc.kind == "not_found":
            raise ValidationFailed.field("psa_product", exc.message) from None
        raise psa_error(exc) from None
    clash = PsaMapping.get_or_none(
        (PsaMapping.account == account.id)
        & (PsaMapping.product_code == product.code)
        & (PsaMapping.mapping_type == data["mapping_type"])
        & (PsaMapping.unique_id == data["unique_id"])
    )
    if clash is not None:
        raise ValidationFailed.field(
            "unique_id",
            f"{product.code} already has a {data['mapping_type']} mapping for "
            f"{plans[data['unique_id']]} (to {clash.psa_product}, level {clash.level})",
        )
    with database.atomic():
        mapping = PsaMapping.create(
            account=account,
            product_code=product.code,
            mapping_type=data["mapping_type"],
            psa_product=str(item.get("identifier") or data["psa_product"]),
            psa_product_name=str(item.get("description") or "")[:300],
            unique_id=data["unique_id"],
            level=data["level"],
            source="billhive",
            created_by=actor,
        )
        audit.record(actor, "psa.mapping.create", mapping, account=account, after=_snap(mapping))
    return mapping


def _snap(m: PsaMapping) -> dict:
    return {
        "product_code": m.product_code,
        "mapping_type": m.mapping_type,
        "psa_product": m.psa_product,
        "unique_id": m.unique_id,
        "level": m.level,
        "source": m.source,
    }


def get_mapping(actor, mapping_id, privilege: str) -> PsaMapping:
    mapping = (
        rbac.get_scoped(PsaMapping, actor, mapping_id)
        if actor is not None
        else PsaMapping.get_or_none(PsaMapping.id == mapping_id)
    )
    if mapping is None:
        raise NotFound(f"mapping {mapping_id} not found")
    if actor is not None:
        rbac.require(actor, privilege, mapping.account)
    return mapping


def delete_mapping(actor, mapping: PsaMapping) -> None:
    if mapping.read_only:
        raise ValidationFailed.field(
            "source",
            f"this mapping is managed by {mapping.source} and is read-only here",
        )
    with database.atomic():
        audit.record(
            actor, "psa.mapping.delete", mapping, account=mapping.account, before=_snap(mapping)
        )
        mapping.delete_instance()


# -- company links -----------------------------------------------------------------------------


class LinkInput(Schema):
    customer_id = Id(required=True)
    psa_company_id = Id(required=True, maximum=MAX_INT32)
    agreement_id = Id(required=True, maximum=MAX_INT32)


class LinkOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    customer_id = fields.Integer()
    customer_name = fields.Function(lambda link: link.customer.name)
    psa_company_id = fields.Integer()
    psa_company_name = fields.String()
    psa_company_identifier = fields.String()
    agreement_id = fields.Integer(allow_none=True)
    agreement_name = fields.String()
    confirmed_at = UtcDateTime(allow_none=True)
    confirmed_by = fields.Function(
        lambda link: link.confirmed_by.email if link.confirmed_by else None
    )


def customers_of(account: Account) -> list[Account]:
    """Customer accounts whose invoices this integration pushes: the customers in the
    account's subtree that no nearer integration owns."""
    below = Account.select().where(rbac.in_subtree(account, strict=True))
    out = []
    for acc in below.order_by(Account.name):
        if rbac.level_of(acc) != "customer":
            continue
        if owner_of(acc) is not None and owner_of(acc).id != account.id:
            continue
        out.append(acc)
    return out


def owner_of(customer: Account) -> Account | None:
    """The nearest account above the customer with a ConnectWise connection."""
    ids = [int(x) for x in customer.path.strip("/").split("/") if x][:-1]
    if not ids:
        return None
    conns = {c.account_id: c for c in PsaConnection.select().where(PsaConnection.account.in_(ids))}
    for account_id in reversed(ids):
        if account_id in conns:
            return conns[account_id].account
    return None


def links_of(account: Account) -> dict[int, CompanyLink]:
    return {
        link.customer_id: link
        for link in CompanyLink.select().where(CompanyLink.account == account.id)
    }


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.casefold(), b.casefold()).ratio()


def suggest_companies(account: Account, customer: Account, limit: int = 5) -> list[dict]:
    """ConnectWise companies whose name resembles the customer's, best first. Nothing is
    stored: a link exists only once a person confirms one."""
    conn = require_connection(account)
    words = customer.name.split()
    try:
        with client_for(conn) as client:
            found = {c["id"]: c for c in client.find_companies(customer.name)}
            if len(found) < limit and words:
                for c in client.find_companies(words[0]):
                    found.setdefault(c["id"], c)
    except ConnectWiseError as exc:
        raise psa_error(exc) from None
    ranked = sorted(found.values(), key=lambda c: -_similarity(customer.name, c.get("name", "")))
    return [
        {
            "id": c["id"],
            "name": c.get("name", ""),
            "identifier": c.get("identifier", ""),
            "score": round(_similarity(customer.name, c.get("name", "")), 2),
        }
        for c in ranked[:limit]
    ]


def company_agreements(account: Account, psa_company_id: int) -> list[dict]:
    conn = require_connection(account)
    try:
        with client_for(conn) as client:
            agreements = client.agreements(int(psa_company_id))
    except ConnectWiseError as exc:
        raise psa_error(exc) from None
    return [{"id": a["id"], "name": a.get("name", "")} for a in agreements]


def confirm_link(actor, account: Account, payload: dict) -> CompanyLink:
    """A person confirms a customer ↔ ConnectWise company (and agreement) link."""
    require_licensed()
    try:
        data = LinkInput().load(payload or {})
    except ValidationError as err:
        raise marshmallow_errors(err) from None
    customer = (
        rbac.get_account(actor, data["customer_id"])
        if actor is not None
        else Account.get_or_none(Account.id == data["customer_id"])
    )
    if customer is None or customer.id not in {c.id for c in customers_of(account)}:
        raise NotFound(f"customer {data['customer_id']} not found under {account.name}")
    conn = require_connection(account)
    try:
        with client_for(conn) as client:
            company = client.get_company(data["psa_company_id"])
            agreements = {a["id"]: a for a in client.agreements(data["psa_company_id"])}
    except ConnectWiseError as exc:
        if exc.kind == "not_found":
            raise ValidationFailed.field("psa_company_id", exc.message) from None
        raise psa_error(exc) from None
    agreement = agreements.get(data["agreement_id"])
    if agreement is None:
        raise ValidationFailed.field(
            "agreement_id",
            f"agreement {data['agreement_id']} is not an active agreement of {company.get('name')}",
        )
    with database.atomic():
        link = CompanyLink.get_or_none(CompanyLink.customer == customer.id) or CompanyLink(
            customer=customer
        )
        before = None if link.id is None else {"psa_company_id": link.psa_company_id}
        link.account = account
        link.psa_company_id = company["id"]
        link.psa_company_name = str(company.get("name") or "")[:300]
        link.psa_company_identifier = str(company.get("identifier") or "")[:100]
        link.agreement_id = agreement["id"]
        link.agreement_name = str(agreement.get("name") or "")[:300]
        link.confirmed_at = utcnow()
        link.confirmed_by = actor
        link.save()
        audit.record(
            actor,
            "psa.link.confirm",
            link,
            account=account,
            before=before,
            after={
                "customer": customer.id,
                "psa_company_id": link.psa_company_id,
                "agreement_id": link.agreement_id,
            },
        )
    return link


def get_link(actor, link_id, privilege: str) -> CompanyLink:
    link = rbac.get_scoped(CompanyLink, actor, link_id)
    rbac.require(actor, privilege, link.account)
    return link


def unlink(actor, link: CompanyLink) -> None:
    with database.atomic():
        audit.record(
            actor,
            "psa.link.delete",
            link,
            account=link.account,
            before={"customer": link.customer_id, "psa_company_id": link.psa_company_id},
        )
        link.delete_instance()


# -- sync --------------------------------------------------------------------------------------


def external_key(customer_id: int, mapping_id: int) -> str:
    """One ConnectWise addition per (customer, mapping): each invoice updates its quantity,
    so an agreement never accumulates an addition per period, and a replay finds it."""
    return f"a{customer_id}:m{mapping_id}"


def _line_plan(line) -> str | None:
    """The price plan id a line was rated from, when the line says (``source``)."""
    source = str(getattr(line, "source", "") or "")
    kind, _, ref = source.partition(":")
    if not ref.isdigit():
        return None
    if kind == "plan":
        return ref
    if kind in ("subscription", "usage"):
        billing = billing_models()
        sub = billing.Subscription.get_or_none(billing.Subscription.id == int(ref))
        return str(sub.plan_id) if sub is not None else None
    return None


def quantity_for(mapping: PsaMapping, lines: list) -> Decimal | None:
    """The quantity a mapping pushes for an invoice's lines; None when it bills nothing."""
    mine = [
        line
        for line in lines
        if line.product_code == mapping.product_code
        and (mapping.unique_id == ALL_PLANS or _line_plan(line) == mapping.unique_id)
    ]
    if not mine:
        return None
    if mapping.mapping_type == "per_account":
        return Decimal(1)
    total = Decimal(0)
    for line in mine:
        try:
            total += Decimal(str(line.quantity))
        except InvalidOperation:
            continue
    return total


def record_invoice(invoice) -> list[SyncItem]:
    """Pending items for an issued invoice of a linked customer (idempotent)."""
    if getattr(invoice, "kind", "invoice") != "invoice":
        return []
    link = CompanyLink.get_or_none(
        (CompanyLink.customer == invoice.account_id) & CompanyLink.confirmed_at.is_null(False)
    )
    if link is None:
        return []
    lines = list(invoice.lines)
    items = []
    for mapping in mappings_of(link.account):
        quantity = quantity_for(mapping, lines)
        if quantity is None:
            continue
        item = SyncItem.get_or_none(
            (SyncItem.invoice_id == invoice.id) & (SyncItem.mapping == mapping.id)
        )
        if item is None:
            item = SyncItem.create(
                account=link.account,
                customer=link.customer,
                mapping=mapping,
                invoice_id=invoice.id,
                product_code=mapping.product_code,
                psa_product=mapping.psa_product,
                unique_id=mapping.unique_id,
                level=mapping.level,
                quantity=format(quantity, "f"),
                agreement_id=link.agreement_id,
                external_key=external_key(link.customer_id, mapping.id),
            )
        items.append(item)
    return items


def _latest_issued_invoices(account: Account) -> list:
    Invoice = billing_models().Invoice
    out = []
    for link in CompanyLink.select().where(
        (CompanyLink.account == account.id) & CompanyLink.confirmed_at.is_null(False)
    ):
        inv = (
            Invoice.select()
            .where(
                (Invoice.account == link.customer_id)
                & (Invoice.kind == "invoice")
                & (Invoice.status.in_(("issued", "paid")))
            )
            .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
            .first()
        )
        if inv is not None:
            out.append(inv)
    return out


def _superseded(item: SyncItem) -> bool:
    """A newer invoice's quantity for the same addition is already there or queued."""
    return (
        SyncItem.select()
        .where(
            (SyncItem.external_key == item.external_key)
            & (SyncItem.account == item.account_id)
            & (SyncItem.invoice_id > item.invoice_id)
            & (SyncItem.outcome.in_(DONE + PUSH_AGAIN))
        )
        .exists()
    )


def push_item(client: ConnectWiseClient, item: SyncItem, run: SyncRun | None) -> SyncItem:
    """Push one item; its outcome and message are saved whatever happens."""
    item.run = run
    item.attempts += 1
    item.updated_at = utcnow()
    if _superseded(item):
        item.outcome = "superseded"
        item.message = "a newer invoice's quantity replaces this one"
    elif item.agreement_id is None:
        item.outcome = "failed"
        item.message = "the customer's company link names no agreement: confirm the link again"
    else:
        try:
            outcome, addition = client.upsert_addition(
                item.agreement_id,
                item.psa_product,
                Decimal(item.quantity),
                item.external_key,
                level=item.level,
            )
        except ConnectWiseError as exc:
            item.outcome = "uncertain" if exc.kind == "uncertain" else "failed"
            item.message = exc.message
        except ValueError as exc:
            item.outcome = "failed"
            item.message = str(exc)
        else:
            item.outcome = outcome
            item.addition_id = addition.get("id")
            item.message = (
                f"addition #{addition.get('id')} on agreement #{item.agreement_id}: "
                f"quantity {item.quantity}, level {item.level}"
            )
    item.save()
    return item


def pending_items(account: Account) -> list[SyncItem]:
    """What a full sync pushes: every pending, failed or uncertain item of the account."""
    return list(
        SyncItem.select()
        .where((SyncItem.account == account.id) & SyncItem.outcome.in_(PUSH_AGAIN))
        .order_by(SyncItem.invoice_id, SyncItem.id)
    )


def _keys_by_agreement(account: Account, agreements: set[int] | None) -> dict[int, set[str]]:
    query = (
        SyncItem.select(SyncItem.agreement_id, SyncItem.external_key)
        .where(
            (SyncItem.account == account.id)
            & SyncItem.agreement_id.is_null(False)
            & SyncItem.outcome.in_(DONE + PUSH_AGAIN)
        )
        .distinct()
    )
    if agreements is None:
        # the agreements the account pushes to now (an agreement of an older link may be
        # gone: it would fail every sync)
        agreements = {
            int(link.agreement_id)
            for link in CompanyLink.select().where(
                (CompanyLink.account == account.id)
                & CompanyLink.confirmed_at.is_null(False)
                & CompanyLink.agreement_id.is_null(False)
            )
        }
    query = query.where(SyncItem.agreement_id.in_(sorted(agreements)))
    out: dict[int, set[str]] = {}
    for row in query.tuples():
        out.setdefault(int(row[0]), set()).add(str(row[1]))
    return out


def reconcile(
    client: ConnectWiseClient, account: Account, items: list, agreements: set[int] | None
) -> tuple[list[dict], list[str]]:
    """Cancel, at ConnectWise, every addition beyond the first carrying one of the account's
    keys (on ``agreements``, or on every agreement its confirmed company links name). The
    latest item of a key that had duplicates is pushed again (added to ``items``), so the
    kept addition bills what the latest invoice says. Returns (cancelled, problems)."""
    cancelled: list[dict] = []
    problems: list[str] = []
    for agreement_id, keys in sorted(_keys_by_agreement(account, agreements).items()):
        try:
            cancelled += client.cancel_duplicates(agreement_id, keys)
        except ConnectWiseError as exc:
            problems.append(f"agreement #{agreement_id}: {exc.message}")
    queued = {item.id for item in items}
    for key in sorted({entry["key"] for entry in cancelled}):
        latest = (
            SyncItem.select()
            .where((SyncItem.account == account.id) & (SyncItem.external_key == key))
            .order_by(SyncItem.invoice_id.desc(), SyncItem.id.desc())
            .first()
        )
        if latest is not None and latest.id not in queued and latest.outcome in DONE:
            latest.outcome = "pending"
            latest.message = "pushed again after duplicate additions were cancelled"
            latest.save()
            items.append(latest)
            queued.add(latest.id)
    return cancelled, problems


def _cancelled_text(cancelled: list[dict]) -> str:
    return f"cancelled {len(cancelled)} duplicate addition(s) at ConnectWise: " + ", ".join(
        f"#{c['addition_id']} on agreement #{c['agreement_id']} (key {c['key']}, "
        f"kept #{c['kept_id']})"
        for c in cancelled
    )


def sync(account: Account, trigger: str, items=None, *, invoice_id=None, progress=None) -> SyncRun:
    """Push ``items`` (default: every pending, failed or uncertain item of the account, after
    recording the latest issued invoice of each linked customer). Every sync first
    reconciles: duplicate additions of the account's keys are cancelled at ConnectWise
    (all agreements on a full sync, the items' agreements when ``items`` are given) and
    listed in the run's message and counts. Never raises for ConnectWise trouble."""
    if items is None:
        for invoice in _latest_issued_invoices(account):
            record_invoice(invoice)
        items = pending_items(account)
        agreements = None
    else:
        items = list(items)
        agreements = {int(i.agreement_id) for i in items if i.agreement_id is not None}
        if trigger != "invoice_finalized":
            agreements = None  # an explicit sync (CLI) reconciles everything
    run = SyncRun.create(account=account, trigger=trigger, invoice_id=invoice_id)
    conn = get_connection(account)
    if conn is None:
        message = "no ConnectWise connection: the items stay pending"
        run.status, run.message, run.finished_at = "failed", message, utcnow()
        run.counts = {"pending": len(items)}
        run.save()
        return run
    try:
        client = client_for(conn)
    except PsaError as exc:
        run.status, run.message, run.finished_at = "failed", exc.message, utcnow()
        run.save()
        return run
    counts: dict[str, int] = {}
    failed: list[str] = []
    uncertain: list[str] = []
    with client:
        _, problems = reconcile(client, account, items, agreements)
        for item in items:
            push_item(client, item, run)
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
            if item.outcome == "failed":
                failed.append(f"{item.product_code} for {item.customer.name}: {item.message}")
            elif item.outcome == "uncertain":
                uncertain.append(f"{item.product_code} for {item.customer.name}")
            if progress is not None:
                progress(item)
        cancelled = list(client.cancelled)
    ok = sum(counts.get(k, 0) for k in DONE)
    notes = []
    if cancelled:
        counts["duplicates_cancelled"] = len(cancelled)
        notes.append(_cancelled_text(cancelled))
    if problems:
        notes.append("could not check for duplicate additions on " + "; ".join(problems))
    if uncertain:
        notes.append(
            f"{len(uncertain)} uncertain (ConnectWise did not confirm in time; the next sync "
            "resolves them by key, never posting twice): " + ", ".join(uncertain)
        )
    run.counts = counts
    run.finished_at = utcnow()
    if failed:
        run.status = "partial" if ok or counts.get("superseded") or uncertain else "failed"
        run.message = (
            f"{len(failed)} of {len(items)} failed (retried on the next sync): " + "; ".join(failed)
        )
    else:
        run.status = "partial" if uncertain or problems else "ok"
        run.message = (
            f"{len(items)} item(s): "
            + ", ".join(
                f"{n} {k}" for k, n in sorted(counts.items()) if k != "duplicates_cancelled"
            )
            if items
            else "nothing to push"
        )
    if notes:
        run.message += "; " + "; ".join(notes)
    if cancelled:
        log.warning("psa sync of account %s: %s", account.id, _cancelled_text(cancelled))
    run.save()
    return run


def on_invoice_finalized(invoice) -> SyncRun | None:
    """Record the invoice's items and push them; never lets ConnectWise break issuing."""
    try:
        items = record_invoice(invoice)
        if not items:
            return None
        if rbac.host().license_problem(PLUGIN_NAME):
            log.warning("psa_mapping: licence does not cover pushes; items stay pending")
            return None
        return sync(items[0].account, "invoice_finalized", items, invoice_id=invoice.id)
    except Exception:  # noqa: BLE001 - issuing must go on; the items stay pending
        log.exception("psa_mapping: could not sync invoice %s", getattr(invoice, "id", "?"))
        return None


class SyncItemOut(Schema):
    id = fields.Integer()
    run_id = fields.Integer(allow_none=True)
    customer_id = fields.Integer()
    customer_name = fields.Function(lambda i: i.customer.name)
    mapping_id = fields.Integer(allow_none=True)
    invoice_id = fields.Integer()
    product_code = fields.String()
    psa_product = fields.String()
    unique_id = fields.String()
    level = fields.Integer()
    quantity = fields.String()
    agreement_id = fields.Integer(allow_none=True)
    external_key = fields.String()
    outcome = fields.String()
    message = fields.String()
    addition_id = fields.Integer(allow_none=True)
    attempts = fields.Integer()
    updated_at = UtcDateTime()


class SyncRunOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    trigger = fields.String()
    invoice_id = fields.Integer(allow_none=True)
    started_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    status = fields.String()
    message = fields.String()
    counts = fields.Dict()


class SyncRunDetail(SyncRunOut):
    items = fields.Method("_items")

    def _items(self, run):
        return SyncItemOut(many=True).dump(run.items.order_by(SyncItem.id))
