"""The ``connectwise`` billing connector: what ``core.connectors`` calls to push to
ConnectWise Manage (see :class:`core.registry.BillingConnector`).

* ``test``/``session``: the connection settings checked by a test call, and a client for
  one sync;
* ``items``: one item per mapping of the account that an issued invoice of a linked
  customer bills, its quantity by the mapping rules (``integration.quantity_for``), keyed
  ``m<mapping>`` with the external key ``a<customer>:m<mapping>``
  (``integration.external_key``): one ConnectWise addition per customer and mapping,
  updated by each invoice;
* ``push``: upsert that addition on the link's agreement (found by its key, so an uncertain
  POST is never sent twice);
* ``reconcile``/``report``: additions carrying one of the account's keys beyond the first
  are cancelled at ConnectWise before a sync pushes, and listed in the run.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from core.kit import (
    ConnectorLink,
    PushFailed,
    PushItem,
    PushResult,
    SyncItem,
    ValidationFailed,
    load,
)
from plugins.psa_mapping.service import integration as svc
from plugins.psa_mapping.service.connectwise import ConnectWiseClient, ConnectWiseError

log = logging.getLogger("billhive.psa")


def test(settings: dict) -> str:
    """``Connected to ConnectWise Manage <version> ...``; raises PushFailed saying what to fix.
    The settings are checked by the client's guards (core.outbound), not refused here: a
    stored connection is tested as it is."""
    schema = svc.ConnectionSettingsSchema()
    try:
        loaded = load(schema, {k: v for k, v in (settings or {}).items() if k in schema.fields})
    except ValidationFailed as exc:
        raise PushFailed(f"Connection failed: invalid ConnectWise settings: {exc.errors}") from None
    ok, message = svc.run_test(svc.cw_settings(loaded))
    if not ok:
        raise PushFailed(message)
    return message


def session(settings: dict) -> ConnectWiseClient:
    return svc.new_client(svc.cw_settings(settings))


def items(context) -> list[PushItem]:
    link = context.link
    lines = list(context.invoice.lines)
    out = []
    for mapping in svc.mappings_of(link.account):
        quantity = svc.quantity_for(mapping, lines)
        if quantity is None:
            continue
        out.append(
            PushItem(
                key=f"m{mapping.id}",
                external_key=svc.external_key(link.customer_id, mapping.id),
                product_code=mapping.product_code,
                quantity=format(quantity, "f"),
                remote_product=mapping.remote_product,
                unique_id=mapping.unique_id,
                level=mapping.level,
                target_id=link.target_id,
                mapping_id=mapping.id,
            )
        )
    return out


def push(client: ConnectWiseClient, item) -> PushResult:
    if item.target_id is None:
        raise PushFailed("the customer's company link names no agreement: confirm the link again")
    try:
        outcome, addition = client.upsert_addition(
            item.target_id,
            item.remote_product,
            Decimal(item.quantity),
            item.external_key,
            level=item.level,
        )
    except ConnectWiseError as exc:
        raise PushFailed(exc.message, uncertain=exc.kind == "uncertain") from None
    except ValueError as exc:
        raise PushFailed(str(exc)) from None
    return PushResult(
        outcome,
        addition.get("id"),
        f"addition #{addition.get('id')} on agreement #{item.target_id}: "
        f"quantity {item.quantity}, level {item.level}",
    )


def _keys_by_agreement(account, agreements: set[int] | None) -> dict[int, set[str]]:
    query = (
        SyncItem.select(SyncItem.target_id, SyncItem.external_key)
        .where(
            (SyncItem.account == account.id)
            & (SyncItem.connector == svc.CODE)
            & SyncItem.target_id.is_null(False)
            & SyncItem.outcome.in_(svc.runtime.DONE + svc.runtime.PUSH_AGAIN)
        )
        .distinct()
    )
    if agreements is None:
        # the agreements the account pushes to now (an agreement of an older link may be
        # gone: it would fail every sync)
        agreements = {
            int(link.target_id)
            for link in ConnectorLink.select().where(
                (ConnectorLink.account == account.id)
                & (ConnectorLink.connector == svc.CODE)
                & ConnectorLink.confirmed_at.is_null(False)
                & ConnectorLink.target_id.is_null(False)
            )
        }
    query = query.where(SyncItem.target_id.in_(sorted(agreements)))
    out: dict[int, set[str]] = {}
    for row in query.tuples():
        out.setdefault(int(row[0]), set()).add(str(row[1]))
    return out


def reconcile(client: ConnectWiseClient, account, items: list, full: bool) -> list[str]:
    """Cancel, at ConnectWise, every addition beyond the first carrying one of the account's
    keys (on the items' agreements, or on every agreement its confirmed company links name
    when ``full``). The latest item of a key that had duplicates is pushed again (added to
    ``items``), so the kept addition bills what the latest invoice says."""
    agreements = None if full else {int(i.target_id) for i in items if i.target_id is not None}
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
            .where(
                (SyncItem.account == account.id)
                & (SyncItem.connector == svc.CODE)
                & (SyncItem.external_key == key)
            )
            .order_by(SyncItem.invoice_id.desc(), SyncItem.id.desc())
            .first()
        )
        if latest is not None and latest.id not in queued and latest.outcome in svc.runtime.DONE:
            latest.outcome = "pending"
            latest.message = "pushed again after duplicate additions were cancelled"
            latest.save()
            items.append(latest)
            queued.add(latest.id)
    if problems:
        return ["could not check for duplicate additions on " + "; ".join(problems)]
    return []


def cancelled_text(cancelled: list[dict]) -> str:
    return f"cancelled {len(cancelled)} duplicate addition(s) at ConnectWise: " + ", ".join(
        f"#{c['addition_id']} on agreement #{c['agreement_id']} (key {c['key']}, "
        f"kept #{c['kept_id']})"
        for c in cancelled
    )


def report(client: ConnectWiseClient) -> tuple[dict, list[str]]:
    """The duplicate additions this sync cancelled: a count and a note for the run."""
    if not client.cancelled:
        return {}, []
    text = cancelled_text(client.cancelled)
    log.warning("psa sync: %s", text)
    return {"duplicates_cancelled": len(client.cancelled)}, [text]
