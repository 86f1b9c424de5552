"""Pushing issued invoices through billing connectors: items, runs, retries, the log.

An issued invoice gives, per connector that serves its customer, the connector's
:class:`core.registry.PushItem` s, kept as ``SyncItem`` rows (idempotent: recording an
invoice again finds its items). A sync pushes items and records a ``SyncRun``:

* failed and uncertain items are pushed again by the next sync (nothing is dropped);
* an item still to push whose external key a newer invoice's item carries is
  ``superseded`` (the newer quantity replaces it), never pushed;
* an ``uncertain`` item (the outside system may have it) is pushed again only through the
  connector's ``push``, which finds it by its external key: never sent twice blindly.

After ``invoice_finalized`` (the core's hook) each enabled connector's items of that invoice
are recorded and pushed; a connector's trouble never breaks issuing (items stay pending).
"""

from __future__ import annotations

import contextlib
import logging

from core import rbac
from core.billing.invoicing import documents
from core.billing.models import Invoice
from core.connectors import settings as connector_settings
from core.connectors.models import ConnectorLink, SyncItem, SyncRun
from core.db import utcnow
from core.errors import BillhiveError
from core.models import Account
from core.registry import BillingConnector, PushContext, PushFailed

log = logging.getLogger("billhive.connectors")
DONE = ("created", "updated", "unchanged")
#: Items a sync pushes (again): new ones, failed ones, and uncertain ones.
PUSH_AGAIN = ("pending", "failed", "uncertain")


def confirmed_link(customer_id: int, code: str) -> ConnectorLink | None:
    return ConnectorLink.get_or_none(
        (ConnectorLink.customer == customer_id)
        & (ConnectorLink.connector == code)
        & ConnectorLink.confirmed_at.is_null(False)
    )


def record_invoice(invoice, code: str) -> list[SyncItem]:
    """Pending items of an issued invoice for one connector (idempotent)."""
    if getattr(invoice, "kind", "invoice") != "invoice":
        return []
    conn = connector_settings.connector(code)
    customer = Account.get_by_id(invoice.account_id)
    link = None
    if conn.links:
        link = confirmed_link(customer.id, code)
        if link is None:
            return []
        account = link.account
    else:
        account = connector_settings.owner_of(customer, code)
        if account is None:
            return []
    context = PushContext(account, customer, invoice, documents.build(invoice), link)
    items = []
    for planned in conn.items(context):
        item = SyncItem.get_or_none(
            (SyncItem.connector == code)
            & (SyncItem.invoice_id == invoice.id)
            & (SyncItem.key == planned.key)
        )
        if item is None:
            item = SyncItem.create(
                account=account,
                connector=code,
                customer=customer,
                mapping=planned.mapping_id,
                invoice_id=invoice.id,
                key=planned.key,
                product_code=planned.product_code,
                remote_product=planned.remote_product,
                unique_id=planned.unique_id,
                level=planned.level,
                quantity=planned.quantity,
                target_id=planned.target_id,
                external_key=planned.external_key,
                payload=planned.payload,
            )
        items.append(item)
    return items


def latest_issued_invoices(account: Account, code: str) -> list:
    """The latest issued invoice of each customer confirmed-linked to the account."""
    out = []
    for link in ConnectorLink.select().where(
        (ConnectorLink.account == account.id)
        & (ConnectorLink.connector == code)
        & ConnectorLink.confirmed_at.is_null(False)
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
    """A newer invoice's item for the same external key is already there or queued."""
    return (
        SyncItem.select()
        .where(
            (SyncItem.connector == item.connector)
            & (SyncItem.external_key == item.external_key)
            & (SyncItem.account == item.account_id)
            & (SyncItem.invoice_id > item.invoice_id)
            & (SyncItem.outcome.in_(DONE + PUSH_AGAIN))
        )
        .exists()
    )


def push_item(conn: BillingConnector, session, item: SyncItem, run: SyncRun | None) -> SyncItem:
    """Push one item; its outcome and message are saved whatever happens."""
    item.run = run
    item.attempts += 1
    item.updated_at = utcnow()
    if _superseded(item):
        item.outcome = "superseded"
        item.message = "a newer invoice's quantity replaces this one"
    else:
        try:
            result = conn.push(session, item)
        except PushFailed as exc:
            item.outcome = "uncertain" if exc.uncertain else "failed"
            item.message = exc.message
        else:
            item.outcome = result.outcome
            item.remote_id = result.remote_id
            item.message = result.message
    item.save()
    return item


def pending_items(account: Account, code: str) -> list[SyncItem]:
    """What a full sync pushes: every pending, failed or uncertain item of the account."""
    return list(
        SyncItem.select()
        .where(
            (SyncItem.account == account.id)
            & (SyncItem.connector == code)
            & SyncItem.outcome.in_(PUSH_AGAIN)
        )
        .order_by(SyncItem.invoice_id, SyncItem.id)
    )


def sync(
    account: Account, code: str, trigger: str, items=None, *, invoice_id=None, progress=None
) -> SyncRun:
    """Push ``items`` (default: every pending, failed or uncertain item of the account, after
    recording the latest issued invoice of each linked customer for a connector with
    links). The connector's ``reconcile`` runs first (``full`` unless the items of one
    finalized invoice are pushed). Never raises for the outside system's trouble."""
    conn = connector_settings.connector(code)
    full = trigger != "invoice_finalized"
    if items is None:
        if conn.links:
            for invoice in latest_issued_invoices(account, code):
                record_invoice(invoice, code)
        items = pending_items(account, code)
    else:
        items = list(items)
    run = SyncRun.create(account=account, connector=code, trigger=trigger, invoice_id=invoice_id)
    row = connector_settings.get(account, code)
    if row is None:
        message = f"no {conn.title} connection: the items stay pending"
        run.status, run.message, run.finished_at = "failed", message, utcnow()
        run.counts = {"pending": len(items)}
        run.save()
        return run
    try:
        values = connector_settings.values_of(row, conn.title)
        session = conn.session(values) if conn.session else contextlib.nullcontext(values)
    except BillhiveError as exc:
        run.status, run.message, run.finished_at = "failed", exc.message, utcnow()
        run.save()
        return run
    counts: dict[str, int] = {}
    failed: list[str] = []
    uncertain: list[str] = []
    extra: dict[str, int] = {}
    notes: list[str] = []
    with session as active:
        problems = conn.reconcile(active, account, items, full) if conn.reconcile else []
        for item in items:
            push_item(conn, active, item, run)
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
            what = item.product_code or f"invoice {item.invoice_id}"
            if item.outcome == "failed":
                failed.append(f"{what} for {item.customer.name}: {item.message}")
            elif item.outcome == "uncertain":
                uncertain.append(f"{what} for {item.customer.name}")
            if progress is not None:
                progress(item)
        if conn.report:
            extra, notes = conn.report(active)
    ok = sum(counts.get(k, 0) for k in DONE)
    notes = list(notes)
    if problems:
        notes.append("; ".join(problems))
    if uncertain:
        notes.append(
            f"{len(uncertain)} uncertain ({conn.title} did not confirm in time; the next sync "
            "resolves them by key, never posting twice): " + ", ".join(uncertain)
        )
    run.counts = {**counts, **extra}
    run.finished_at = utcnow()
    if failed:
        run.status = "partial" if ok or counts.get("superseded") or uncertain else "failed"
        run.message = (
            f"{len(failed)} of {len(items)} failed (retried on the next sync): " + "; ".join(failed)
        )
    else:
        run.status = "partial" if uncertain or problems else "ok"
        run.message = (
            f"{len(items)} item(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            if items
            else "nothing to push"
        )
    if notes:
        run.message += "; " + "; ".join(notes)
    run.save()
    return run


def on_invoice_finalized(invoice) -> list[SyncRun]:
    """Record the invoice's items for every enabled connector and push them; a connector's
    trouble never breaks issuing (its items stay pending)."""
    runs = []
    for code in sorted(connector_settings.connectors()):
        try:
            items = record_invoice(invoice, code)
            if not items:
                continue
            plugin = connector_settings.plugin_of(code)
            if plugin is not None and rbac.host().license_problem(plugin):
                log.warning("connector %s: licence does not cover pushes; items stay pending", code)
                continue
            account = items[0].account
            runs.append(sync(account, code, "invoice_finalized", items, invoice_id=invoice.id))
        except Exception:  # noqa: BLE001 - issuing must go on; the items stay pending
            log.exception(
                "connector %s: could not push invoice %s", code, getattr(invoice, "id", "?")
            )
    return runs


def retry(actor, account: Account, code: str, trigger: str = "panel") -> SyncRun:
    """A sync asked for by a person (panel, API): licensed connectors only."""
    connector_settings.require_licensed(code)
    return sync(account, code, trigger)
