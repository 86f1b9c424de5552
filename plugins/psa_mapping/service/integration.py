"""One account's ConnectWise integration: the ConnectWise side of the core's
billing-connector runtime (``core.connectors``).

The core keeps the connection settings (keys encrypted), the mappings, the company links,
the sync items and runs; this module adds what is ConnectWise's: the settings and their
checks, the catalog, company suggestions and agreements, and the mapping rules (what a
mapping type and a Unique ID/Plan mean for an invoice's quantities).

Every function that takes an ``actor`` checks privileges and scoping through ``core.rbac``
(outside the caller's subtree = 404). ``actor=None`` is the operator's shell (CLI, hooks).
"""

from __future__ import annotations

import difflib
import os
import re
from decimal import Decimal, InvalidOperation

from flask import current_app, has_app_context
from marshmallow import Schema, fields, validate

from core.kit import (
    ALL_PLANS,
    MAX_INT32,
    Account,
    BillhiveError,
    ConnectorLink,
    ConnectorMapping,
    Id,
    NotFound,
    PricePlan,
    Product,
    Subscription,
    SyncItem,
    Text,
    UtcDateTime,
    ValidationFailed,
    audit,
    database,
    host,
    load,
    outbound,
    rbac,
    utcnow,
)
from core.kit import connector_settings as connectors
from core.kit import connector_sync as runtime
from plugins.psa_mapping.service.connectwise import (
    CONFIRM_WINDOW,
    RETRY_AFTER_MAX,
    ConnectWiseClient,
    ConnectWiseError,
    ConnectWiseSettings,
)

PLUGIN_NAME = "psa_mapping"
CODE = "connectwise"  # the connector's code in the core's tables
TITLE = "ConnectWise"
SECRET_FIELDS = ("public_key", "private_key", "client_id")
MAPPING_TYPES = {
    "per_unit": "Per unit (the quantity invoiced for the service)",
    "per_account": "Per account (1 whenever the service is invoiced)",
}
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
    return connectors.integration_account(actor, account_id, privilege, "PSA integration")


def require_licensed() -> None:
    host().require_licensed(PLUGIN_NAME)


# -- connection settings -----------------------------------------------------------------------


class ConnectionSettingsSchema(Schema):
    """ConnectWise connection settings. Keys are write-only (secret): answers show them masked."""

    site_url = Text(
        2000,
        card_numbers=False,
        required=True,
        metadata={"label": "Site URL", "description": "e.g. https://api-na.myconnectwise.net"},
    )
    company_id = Text(100, card_numbers=False, required=True, metadata={"label": "Company ID"})
    public_key = Text(200, card_numbers=False, load_only=True,
                      metadata={"label": "Public key", "secret": True})  # fmt: skip
    private_key = Text(200, card_numbers=False, load_only=True,
                       metadata={"label": "Private key", "secret": True})  # fmt: skip
    client_id = Text(200, card_numbers=False, load_only=True,
                     metadata={"label": "Client ID", "secret": True})  # fmt: skip
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


def get_connection(account: Account):
    return connectors.get(account, CODE)


def cw_settings(values: dict) -> ConnectWiseSettings:
    return ConnectWiseSettings(
        site_url=(values.get("site_url") or "").strip(),
        company_id=(values.get("company_id") or "").strip(),
        public_key=values.get("public_key") or "",
        private_key=values.get("private_key") or "",
        client_id=values.get("client_id") or "",
        timeout=values.get("timeout", 10.0),
        max_retries=values.get("max_retries", 3),
        backoff=values.get("backoff", 0.5),
    )


def clean(values: dict) -> dict:
    """The connector's check of complete settings (stored keys filled in): ValidationFailed
    naming every field that cannot work; the site URL normalised."""
    settings = cw_settings(values)
    problems = settings.validate()
    if problems:
        raise ValidationFailed(
            "invalid ConnectWise settings — " + "; ".join(problems.values()),
            {k: [v] for k, v in problems.items()},
        )
    return {
        "site_url": settings.base_url,
        "company_id": settings.company_id,
        "public_key": settings.public_key,
        "private_key": settings.private_key,
        "client_id": settings.client_id,
        "timeout": float(settings.timeout),
        "max_retries": int(settings.max_retries),
        "backoff": float(settings.backoff),
    }


def settings_of(row) -> ConnectWiseSettings:
    return cw_settings(connectors.values_of(row, TITLE))


def masked(row) -> dict | None:
    return connectors.masked(row, connectors.connector(CODE))


def save_connection(actor, account: Account, payload: dict):
    return connectors.save(actor, account, CODE, payload)


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


def client_for(row) -> ConnectWiseClient:
    return new_client(settings_of(row))


def require_connection(account: Account):
    return connectors.require(account, CODE, TITLE)


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
    return connectors.test(actor, account, CODE, payload)


# -- catalog (Billhive services and the PSA catalog) -------------------------------------------


def services_of(account: Account) -> list:
    """Products of the account's own catalog: the services that can be billed."""
    return list(Product.select().where(Product.account == account.id).order_by(Product.code))


def service(account: Account, code: str):
    product = Product.get_or_none((Product.account == account.id) & (Product.code == code))
    if product is None:
        raise NotFound(f"service {code} not found in {account.name}'s catalog")
    return product


def plan_choices(product) -> list[tuple[str, str]]:
    """The Unique ID/Plan choices of a service: every plan, or one price plan."""
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
    psa_product = fields.String(attribute="remote_product")
    psa_product_name = fields.String(attribute="remote_product_name")
    unique_id = fields.String()
    level = fields.Integer()
    source = fields.String()
    read_only = fields.Boolean()
    created_at = UtcDateTime()


def mappings_of(account: Account, product_code: str | None = None) -> list[ConnectorMapping]:
    query = ConnectorMapping.select().where(
        (ConnectorMapping.account == account.id) & (ConnectorMapping.connector == CODE)
    )
    if product_code is not None:
        query = query.where(ConnectorMapping.product_code == product_code)
    return list(
        query.order_by(
            ConnectorMapping.product_code, ConnectorMapping.unique_id, ConnectorMapping.id
        )
    )


def create_mapping(actor, account: Account, payload: dict) -> ConnectorMapping:
    require_licensed()
    data = load(MappingInput(), payload)
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
    clash = ConnectorMapping.get_or_none(
        (ConnectorMapping.account == account.id)
        & (ConnectorMapping.connector == CODE)
        & (ConnectorMapping.product_code == product.code)
        & (ConnectorMapping.mapping_type == data["mapping_type"])
        & (ConnectorMapping.unique_id == data["unique_id"])
    )
    if clash is not None:
        raise ValidationFailed.field(
            "unique_id",
            f"{product.code} already has a {data['mapping_type']} mapping for "
            f"{plans[data['unique_id']]} (to {clash.remote_product}, level {clash.level})",
        )
    with database.atomic():
        mapping = ConnectorMapping.create(
            account=account,
            connector=CODE,
            product_code=product.code,
            mapping_type=data["mapping_type"],
            remote_product=str(item.get("identifier") or data["psa_product"]),
            remote_product_name=str(item.get("description") or "")[:300],
            unique_id=data["unique_id"],
            level=data["level"],
            source="billhive",
            created_by=actor,
        )
        audit.record(actor, "psa.mapping.create", mapping, account=account, after=_snap(mapping))
    return mapping


def _snap(m: ConnectorMapping) -> dict:
    return {
        "product_code": m.product_code,
        "mapping_type": m.mapping_type,
        "psa_product": m.remote_product,
        "unique_id": m.unique_id,
        "level": m.level,
        "source": m.source,
    }


def get_mapping(actor, mapping_id, privilege: str) -> ConnectorMapping:
    mapping = (
        rbac.get_scoped(ConnectorMapping, actor, mapping_id)
        if actor is not None
        else ConnectorMapping.get_or_none(ConnectorMapping.id == mapping_id)
    )
    if mapping is None or mapping.connector != CODE:
        raise NotFound(f"mapping {mapping_id} not found")
    if actor is not None:
        rbac.require(actor, privilege, mapping.account)
    return mapping


def delete_mapping(actor, mapping: ConnectorMapping) -> None:
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
    psa_company_id = fields.Integer(attribute="remote_id")
    psa_company_name = fields.String(attribute="remote_name")
    psa_company_identifier = fields.String(attribute="remote_identifier")
    agreement_id = fields.Integer(attribute="target_id", allow_none=True)
    agreement_name = fields.String(attribute="target_name")
    confirmed_at = UtcDateTime(allow_none=True)
    confirmed_by = fields.Function(
        lambda link: link.confirmed_by.email if link.confirmed_by else None
    )


def customers_of(account: Account) -> list[Account]:
    """Customer accounts whose invoices this integration pushes: the customers in the
    account's subtree that no nearer integration owns."""
    return connectors.customers_of(account, CODE)


def links_of(account: Account) -> dict[int, ConnectorLink]:
    return {
        link.customer_id: link
        for link in ConnectorLink.select().where(
            (ConnectorLink.account == account.id) & (ConnectorLink.connector == CODE)
        )
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


def confirm_link(actor, account: Account, payload: dict) -> ConnectorLink:
    """A person confirms a customer ↔ ConnectWise company (and agreement) link."""
    require_licensed()
    data = load(LinkInput(), payload)
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
        link = ConnectorLink.get_or_none(
            (ConnectorLink.customer == customer.id) & (ConnectorLink.connector == CODE)
        ) or ConnectorLink(customer=customer, connector=CODE)
        before = None if link.id is None else {"psa_company_id": link.remote_id}
        link.account = account
        link.remote_id = company["id"]
        link.remote_name = str(company.get("name") or "")[:300]
        link.remote_identifier = str(company.get("identifier") or "")[:100]
        link.target_id = agreement["id"]
        link.target_name = str(agreement.get("name") or "")[:300]
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
                "psa_company_id": link.remote_id,
                "agreement_id": link.target_id,
            },
        )
    return link


def get_link(actor, link_id, privilege: str) -> ConnectorLink:
    link = rbac.get_scoped(ConnectorLink, actor, link_id)
    if link.connector != CODE:
        raise NotFound(f"company link {link_id} not found")
    rbac.require(actor, privilege, link.account)
    return link


def unlink(actor, link: ConnectorLink) -> None:
    with database.atomic():
        audit.record(
            actor,
            "psa.link.delete",
            link,
            account=link.account,
            before={"customer": link.customer_id, "psa_company_id": link.remote_id},
        )
        link.delete_instance()


# -- mapping rules -----------------------------------------------------------------------------


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
        sub = Subscription.get_or_none(Subscription.id == int(ref))
        return str(sub.plan_id) if sub is not None else None
    return None


def quantity_for(mapping, lines: list) -> Decimal | None:
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


# -- sync (the core's runtime, for the ConnectWise connector) -----------------------------------


def sync(account: Account, trigger: str, items=None, *, invoice_id=None, progress=None):
    """A sync of the account's ConnectWise items (``core.connectors.sync.sync``)."""
    return runtime.sync(account, CODE, trigger, items, invoice_id=invoice_id, progress=progress)


def pending_items(account: Account) -> list[SyncItem]:
    """What a full sync pushes, after recording each linked customer's latest invoice."""
    for invoice in runtime.latest_issued_invoices(account, CODE):
        runtime.record_invoice(invoice, CODE)
    return runtime.pending_items(account, CODE)


class SyncItemOut(Schema):
    id = fields.Integer()
    run_id = fields.Integer(allow_none=True)
    customer_id = fields.Integer()
    customer_name = fields.Function(lambda i: i.customer.name)
    mapping_id = fields.Integer(allow_none=True)
    invoice_id = fields.Integer()
    product_code = fields.String()
    psa_product = fields.String(attribute="remote_product")
    unique_id = fields.String()
    level = fields.Integer()
    quantity = fields.String()
    agreement_id = fields.Integer(attribute="target_id", allow_none=True)
    external_key = fields.String()
    outcome = fields.String()
    message = fields.String()
    addition_id = fields.Integer(attribute="remote_id", allow_none=True)
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
