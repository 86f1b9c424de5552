"""Connector settings per account: validating, saving (secrets encrypted), testing, showing.

A connector's ``settings_schema`` (marshmallow; None: no settings, an empty schema) names
its fields; a field with
``metadata={"secret": True}`` is write-only: stored encrypted, shown masked, and left
blank in a form or payload to keep the stored value.
"""

from __future__ import annotations

from marshmallow import Schema

from core import audit, rbac
from core.connectors import secrets
from core.connectors.models import ConnectorSettings
from core.db import database, utcnow
from core.errors import NotFound, ValidationFailed, load
from core.models import Account
from core.registry import BillingConnector, PushFailed

#: Accounts that hold connector settings (customers are pushed through them).
LEVELS = ("provider", "reseller")


def connectors() -> dict[str, BillingConnector]:
    """The connectors of enabled plugins, by code."""
    return rbac.host().billing_connectors()


def connector(code: str) -> BillingConnector:
    found = connectors().get(code)
    if found is None:
        raise NotFound(f"connector {code} not found")
    return found


def plugin_of(code: str) -> str | None:
    """The plugin that declares the connector (for its licence)."""
    host = rbac.host()
    return host.owner(host.catalog.billing_connectors, code)


def require_licensed(code: str) -> None:
    """Refuse new work of a connector whose plugin's licence lapsed (LicenseRequired)."""
    plugin = plugin_of(code)
    if plugin is not None:
        rbac.host().require_licensed(plugin)


def integration_account(
    actor, account_id, privilege: str | None, what: str = "connector"
) -> Account:
    """The provider/reseller account whose settings are asked for, checked for ``actor``
    (``privilege`` None: its subtree only)."""
    if actor is None:
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
    else:
        account = rbac.get_account(actor, account_id)
    if rbac.level_of(account) not in LEVELS:
        raise NotFound(f"account {account_id} has no {what} settings (customers are linked)")
    if actor is not None and privilege is not None:
        rbac.require(actor, privilege, account)
    return account


def checked(actor, account: Account, code: str, edit: bool = False) -> BillingConnector:
    """The connector ``code`` for ``actor`` on ``account`` (in the caller's subtree): 404
    when it is not enabled, 403 without its ``view_privilege`` (with ``edit``: its
    ``edit_privilege``)."""
    conn = connector(code)
    if actor is not None:
        rbac.require(actor, conn.edit_privilege if edit else conn.view_privilege, account)
    return conn


def viewable(actor, account: Account) -> dict[str, BillingConnector]:
    """The enabled connectors ``actor`` holds the ``view_privilege`` of, by code, sorted.
    When that is none, the caller needs ``billing.view`` (403): the list is then empty."""
    shown = {
        code: c
        for code, c in sorted(connectors().items())
        if actor is None or rbac.has(actor, c.view_privilege)
    }
    if not shown and actor is not None:
        rbac.require(actor, "billing.view", account)
    return shown


def settings_schema(conn: BillingConnector) -> type[Schema]:
    """The connector's settings schema (a class); an empty one when it has no settings."""
    return conn.settings_schema or Schema


def secret_fields(conn: BillingConnector) -> tuple[str, ...]:
    fields = settings_schema(conn)().fields
    return tuple(n for n, f in fields.items() if f.metadata.get("secret"))


def get(account: Account, code: str) -> ConnectorSettings | None:
    return ConnectorSettings.get_or_none(
        (ConnectorSettings.account == account.id) & (ConnectorSettings.connector == code)
    )


def require(account: Account, code: str, title: str) -> ConnectorSettings:
    row = get(account, code)
    if row is None:
        raise ValidationFailed.field(
            "connection", f"{account.name} has no {title} connection: save its settings first"
        )
    return row


def stored_secrets(row: ConnectorSettings | None, title: str = "connector") -> dict[str, str]:
    """The row's secrets, decrypted; none when they cannot be read (the instance's connector
    key changed): they are then typed again, never guessed."""
    if row is None:
        return {}
    try:
        return secrets.decrypt(row.secrets, title)
    except secrets.SecretsUnreadable:
        return {}


def values_of(row: ConnectorSettings, title: str = "connector") -> dict:
    """The full settings: plain values and decrypted secrets."""
    return {**(row.values or {}), **secrets.decrypt(row.secrets, title)}


def masked(
    row: ConnectorSettings | None, conn: BillingConnector, hidden: dict | None = None
) -> dict | None:
    """The settings for display: secrets masked (the last 4 characters at most). The
    secrets are ``hidden`` when given (already decrypted), else decrypted from the row
    (SecretsUnreadable when they cannot be)."""
    if row is None:
        return None
    if hidden is None:
        hidden = secrets.decrypt(row.secrets, conn.title)
    out = dict(row.values or {})
    out.update({name: secrets.mask(hidden.get(name, "")) for name in secret_fields(conn)})
    out.update(
        account_id=row.account_id,
        last_test_at=row.last_test_at,
        last_test_ok=row.last_test_ok,
        last_test_message=row.last_test_message,
    )
    return out


def build(conn: BillingConnector, payload: dict, existing: ConnectorSettings | None) -> dict:
    """Validate ``payload`` into settings; blank secrets keep the stored ones (unreadable
    stored secrets count as none: a required one must be typed again). Raises
    ValidationFailed naming every bad field; touches nothing."""
    schema = settings_schema(conn)()
    stored = stored_secrets(existing, conn.title)
    kept = tuple(name for name in secret_fields(conn) if stored.get(name))
    data = load(
        schema, {k: v for k, v in (payload or {}).items() if k in schema.fields}, partial=kept
    )
    for name in secret_fields(conn):
        value = (data.get(name) or "").strip()
        data[name] = value or stored.get(name, "")
    return conn.clean(data) if conn.clean else data


def save(actor, account: Account, code: str, payload: dict) -> ConnectorSettings:
    conn = connector(code)
    existing = get(account, code)
    settings = build(conn, payload, existing)  # raises before anything is written
    hidden = secret_fields(conn)
    with database.atomic():
        before = masked(existing, conn, stored_secrets(existing, conn.title))
        row = existing or ConnectorSettings(account=account, connector=code)
        row.values = {k: v for k, v in settings.items() if k not in hidden}
        row.secrets = secrets.encrypt({k: settings[k] for k in hidden if settings.get(k)})
        row.updated_at = utcnow()
        row.updated_by = actor
        row.last_test_at = row.last_test_ok = None
        row.last_test_message = ""
        row.save()
        audit.record(
            actor,
            "connector.settings.save",
            row,
            account=account,
            before=_jsonable(before),
            after=_jsonable(masked(row, conn)),
        )
    return row


def _jsonable(d: dict | None) -> dict | None:
    return None if d is None else {k: str(v) if v is not None else None for k, v in d.items()}


def run_test(conn: BillingConnector, settings: dict) -> tuple[bool, str]:
    """``(ok, message)``: the connector's sentence, or why it failed."""
    try:
        return True, conn.test(settings)
    except PushFailed as exc:
        return False, exc.message


def test(actor, account: Account, code: str, payload: dict | None = None) -> tuple[bool, str]:
    """Test the stored settings (or unsaved ones in ``payload``, stored secrets filling
    blanks). The stored settings remember the last result."""
    conn = connector(code)
    existing = get(account, code)
    if payload:
        settings = build(conn, payload, existing)
    else:
        settings = values_of(require(account, code, conn.title), conn.title)
    ok, message = run_test(conn, settings)
    if existing is not None and not payload:
        existing.last_test_at = utcnow()
        existing.last_test_ok = ok
        existing.last_test_message = message
        existing.save()
    return ok, message


def owner_of(customer: Account, code: str) -> Account | None:
    """The nearest account above the customer with settings of the connector."""
    ids = [int(x) for x in customer.path.strip("/").split("/") if x][:-1]
    if not ids:
        return None
    rows = {
        r.account_id: r
        for r in ConnectorSettings.select().where(
            ConnectorSettings.account.in_(ids) & (ConnectorSettings.connector == code)
        )
    }
    for account_id in reversed(ids):
        if account_id in rows:
            return rows[account_id].account
    return None


def customers_of(account: Account, code: str) -> list[Account]:
    """Customer accounts whose invoices the account's connector pushes: the customers in
    its subtree that no nearer account's settings of the same connector own."""
    below = Account.select().where(rbac.in_subtree(account, strict=True))
    out = []
    for acc in below.order_by(Account.name):
        if rbac.level_of(acc) != "customer":
            continue
        owner = owner_of(acc, code)
        if owner is not None and owner.id != account.id:
            continue
        out.append(acc)
    return out
