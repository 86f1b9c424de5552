"""Call recording: storage used per period and per billing unit, its retention setting and
its charges (the Call recording sub-tab of the Billing page, its API and CLI).

**Billed like other usage.** The seller sells recording storage as a usage product with the
code :data:`PRODUCT_CODE` (``BU-REC``, unit e.g. "GB") on one of its price plans, and
subscribes the customer to it. Each storage record the recorder reports (a number, a day,
gigabytes) becomes a core :class:`~core.billing.models.UsageRecord` on that subscription in
the same transaction, so the bill run rates it with the plan's usage rate or tiers and the
invoice shows it as the subscription's usage line; nothing here prices anything.

**Never into a billed period.** A record for a day the subscription is billed through already
is refused, naming the day and how far it is billed (the engine bills usage from
``billed_through`` on: a late record would otherwise be silently never billed). A retention
change takes effect on the first day not invoiced yet (the later of today and what the
subscription is billed through), and changes no usage and no invoice: a billed period is never
billed again (``core/billing/coverage.py``).

**Per unit.** Each record keeps the unit holding its number when it arrived (or Unassigned);
the report allocates the invoiced storage line over units in proportion to those gigabytes
(:func:`plugins.billing_units.service.report.allocate`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate
from peewee import chunked

from core.kit import (
    Account,
    PricePlan,
    Product,
    Quantity,
    Subscription,
    Text,
    UsageRecord,
    ValidationFailed,
    audit,
    catalog,
    clock,
    load,
    lock_row,
    write_transaction,
)
from plugins.billing_units.models import RecordingRetention, RecordingStorage
from plugins.billing_units.service import units as svc

PRODUCT_CODE = "BU-REC"
DEFAULT_RETENTION_DAYS = 90
MAX_RETENTION_DAYS = 3650  # ten years
MAX_RECORDS = 10_000  # per request / file


class StorageInput(Schema):
    external_id = Text(100, min_length=1, required=True, card_numbers=False,
                       metadata={"description": "the recorder's id of this report"})  # fmt: skip
    number = Text(40, required=True, card_numbers=False,
                  metadata={"description": "E.164 of one of the account's numbers"})  # fmt: skip
    date = fields.Date(required=True, metadata={"description": "the day the storage was used"})
    gigabytes = Quantity(required=True, places=6,
                         metadata={"description": "storage used that day, in GB"})  # fmt: skip


class StorageBatch(Schema):
    records = fields.List(fields.Dict(), required=True,
                          validate=validate.Length(min=1, max=MAX_RECORDS),
                          metadata={"description": "StorageInput objects"})  # fmt: skip


class RetentionInput(Schema):
    days = fields.Integer(required=True, strict=True,
                          validate=validate.Range(min=1, max=MAX_RETENTION_DAYS),
                          metadata={"description": "days a recording is kept"})  # fmt: skip


# -- the subscription that rates storage -----------------------------------------------------


def subscriptions(account: Account) -> list[Subscription]:
    """The account's subscriptions to a recording-storage plan (product code BU-REC)."""
    return list(
        Subscription.select(Subscription, PricePlan, Product)
        .join(PricePlan)
        .join(Product)
        .where((Subscription.account == account.id) & (Product.code == PRODUCT_CODE))
        .order_by(Subscription.start, Subscription.id)
    )


def _subscription_on(subs: list[Subscription], day: date) -> Subscription | None:
    for sub in subs:
        if sub.start <= day and (sub.end is None or day < sub.end):
            return sub
    return None


def report_allocation(account: Account):
    """``(sources, shares)`` for :func:`plugins.billing_units.service.report.invoiced`: the invoice
    line sources of the account's storage usage and, per line, the gigabytes per unit of
    the line's days."""
    subs = {sub.id: sub for sub in subscriptions(account)}
    sources = {f"usage:{sub_id}" for sub_id in subs}

    def shares(line) -> dict[str, Decimal]:
        sub_id = int(line.source.split(":", 1)[1])
        query = (
            RecordingStorage.select(RecordingStorage.unit_name, RecordingStorage.gigabytes)
            .join(UsageRecord)
            .where(
                (RecordingStorage.account == account.id)
                & (UsageRecord.subscription == sub_id)
                & (RecordingStorage.day >= line.service_start)
                & (RecordingStorage.day < line.service_end)
            )
        )
        out: dict[str, Decimal] = defaultdict(Decimal)
        for name, gigabytes in query.tuples():
            out[name] += Decimal(gigabytes)
        return dict(sorted(out.items()))

    return sources, shares


# -- storage records -------------------------------------------------------------------------


def _refusal(errors: dict, index: int, field: str, message: str) -> None:
    errors.setdefault(str(index), []).append(f"{field}: {message}")


def add_storage(actor, account: Account, rows) -> dict:
    """Store storage records, all or nothing, idempotent by ``external_id`` (a record stored
    already is counted as a duplicate). Each creates the usage record the bill run rates."""
    svc.require_edit(actor, account)
    svc.require_licensed()
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed.field("records", "give at least one storage record")
    if len(rows) > MAX_RECORDS:
        raise ValidationFailed.field("records", f"at most {MAX_RECORDS} records at once")
    numbers = {n.e164: n for n in svc.numbers_of(account)}
    held = svc.number_units(account)
    subs = subscriptions(account)
    schema = StorageInput()
    clean, errors = [], {}
    for index, raw in enumerate(rows):
        try:
            if not isinstance(raw, dict):
                raise ValidationFailed("a storage record must be an object")
            data = schema.load(raw)
            e164 = svc.normalize_e164(data["number"])
        except ValidationError as err:
            for field, msgs in err.messages.items():
                _refusal(errors, index, field, "; ".join(map(str, msgs)))
            continue
        except ValidationFailed as exc:
            _refusal(errors, index, next(iter(exc.errors or {"record": 0})), exc.message)
            continue
        number = numbers.get(e164)
        if number is None:
            _refusal(errors, index, "number",
                     f"{e164} is not a phone number of account '{account.name}'")  # fmt: skip
            continue
        sub = _subscription_on(subs, data["date"])
        if sub is None:
            _refusal(errors, index, "date",
                     f"{account.name} has no subscription to a recording storage plan "
                     f"(product code {PRODUCT_CODE}) on {data['date']}")  # fmt: skip
            continue
        clean.append((index, data, number, sub))
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailed(
            f"{len(errors)} storage record(s) refused; record {first[0]}: {first[1][0]}",
            {"records": errors},
        )
    seen, fresh = set(), []
    for index, data, number, sub in clean:
        if data["external_id"] not in seen:
            seen.add(data["external_id"])
            fresh.append((index, data, number, sub))
    with write_transaction():
        existing = {
            r.external_id
            for r in RecordingStorage.select(RecordingStorage.external_id).where(
                (RecordingStorage.account == account.id)
                & RecordingStorage.external_id.in_(list(seen) or [""])
            )
        }
        fresh = [f for f in fresh if f[1]["external_id"] not in existing]
        late = {}
        for sub_id in sorted({f[3].id for f in fresh}):
            # the subscription's row lock: a bill run moving billed_through waits, or this
            # waits for it and then sees how far it billed (never usage in a billed period)
            late[sub_id] = lock_row(Subscription, sub_id).billed_through
        for index, data, _number, sub in fresh:
            through = late[sub.id]
            if through is not None and data["date"] < through:
                _refusal(errors, index, "date",
                         f"{data['date']} is invoiced already (recording storage is billed "
                         f"through {through}); a billed period is never billed again")  # fmt: skip
        if errors:
            first = next(iter(errors.items()))
            raise ValidationFailed(
                f"{len(errors)} storage record(s) refused; record {first[0]}: {first[1][0]}",
                {"records": errors},
            )
        usage_rows = [
            {"subscription": sub.id, "account": account.id, "quantity": data["gigabytes"],
             "occurred_at": data["date"], "external_id": f"rec:{data['external_id']}"}
            for _, data, _, sub in fresh
        ]  # fmt: skip
        good, bad = catalog.check_usage(
            [
                {
                    "subscription_id": r["subscription"],
                    "quantity": str(r["quantity"]),
                    "date": r["occurred_at"].isoformat(),
                    "external_id": r["external_id"],
                }
                for r in usage_rows
            ]  # fmt: skip
        )
        if bad:  # the core's usage rules (active dates, quantity) refuse what we did not
            index, problems = next(iter(bad.items()))
            raise ValidationFailed(f"storage record refused by the usage rules: {problems}",
                                   {"records": {str(fresh[index][0]): [str(problems)]}})  # fmt: skip
        # a concurrent import of the same ids: the unique index keeps one of each
        catalog.insert_usage(good, actor)
        usage_ids = {
            u.external_id: u.id
            for u in UsageRecord.select(UsageRecord.id, UsageRecord.external_id).where(
                (UsageRecord.account == account.id)
                & UsageRecord.external_id.in_([r["external_id"] for r in usage_rows] or [""])
            )
        }
        records = []
        for _, data, number, _sub in fresh:
            unit = held.get(number.id)
            records.append({
                "account": account.id, "external_id": data["external_id"], "day": data["date"],
                "number": number.id, "unit_name": unit.name if unit else svc.UNASSIGNED,
                "gigabytes": data["gigabytes"],
                "usage": usage_ids[f"rec:{data['external_id']}"],
            })  # fmt: skip
        created = sum(
            RecordingStorage.insert_many(part).on_conflict_ignore().as_rowcount().execute()
            for part in chunked(records, 500)
        )
        audit.record(actor, "recording_storage.import", object_type="recording_storage",
                     object_id=account.id, account=account,
                     after={"received": len(rows), "created": created})  # fmt: skip
    return {"received": len(rows), "created": created, "duplicates": len(rows) - created}


def import_storage_csv(actor, account: Account, text: str) -> dict:
    """Storage records from CSV with the header ``external_id,number,date,gigabytes``; errors
    name the CSV line."""
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    wanted = ("external_id", "number", "date", "gigabytes")
    missing = [c for c in wanted if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationFailed.field("file", f"CSV header lacks column(s): {', '.join(missing)}")
    rows = [{k: (row.get(k) or "").strip() for k in wanted} for row in reader]
    try:
        return add_storage(actor, account, rows)
    except ValidationFailed as exc:
        records = exc.errors.get("records", {}) if isinstance(exc.errors, dict) else {}
        if not isinstance(records, dict) or not records:
            raise
        lines = {f"line {int(i) + 2}": msgs for i, msgs in records.items()}
        first = next(iter(lines.items()))
        raise ValidationFailed(f"{len(lines)} row(s) refused; {first[0]}: {first[1][0]}",
                               lines) from None  # fmt: skip


def storage_by_unit(account: Account, period: tuple[date, date]) -> dict[str, Decimal]:
    """Gigabytes used per unit (as recorded) on the days of ``period``."""
    query = (
        RecordingStorage.select(RecordingStorage.unit_name, RecordingStorage.gigabytes)
        .where(
            (RecordingStorage.account == account.id)
            & (RecordingStorage.day >= period[0])
            & (RecordingStorage.day < period[1])
        )
        .tuples()
    )
    out: dict[str, Decimal] = defaultdict(Decimal)
    for name, gigabytes in query:
        out[name] += Decimal(gigabytes)
    return dict(out)


# -- retention -------------------------------------------------------------------------------


def retention(account: Account, on: date | None = None) -> RecordingRetention:
    """The retention in force on ``on`` (default: today); the default when never set."""
    on = on or clock.today()
    row = (
        RecordingRetention.select()
        .where(
            (RecordingRetention.account == account.id) & (RecordingRetention.effective_from <= on)
        )  # fmt: skip
        .order_by(RecordingRetention.effective_from.desc(), RecordingRetention.id.desc())
        .first()
    )
    return row or RecordingRetention(account=account, days=DEFAULT_RETENTION_DAYS,
                                     effective_from=None)  # fmt: skip


def retention_history(account: Account) -> list[RecordingRetention]:
    return list(
        RecordingRetention.select()
        .where(RecordingRetention.account == account.id)
        .order_by(RecordingRetention.effective_from.desc(), RecordingRetention.id.desc())
    )


def first_unbilled_day(account: Account) -> date:
    """The later of today and what the account's storage is billed through."""
    day = clock.today()
    for sub in subscriptions(account):
        if sub.billed_through is not None and sub.billed_through > day:
            day = sub.billed_through
    return day


def set_retention(actor, account: Account, payload) -> RecordingRetention:
    """Change how long recordings are kept, from the first day not invoiced yet on; no
    usage and no invoice is touched."""
    svc.require_edit(actor, account)
    data = load(RetentionInput(), payload)
    with write_transaction():
        for sub in subscriptions(account):  # a bill run finishing now comes first
            lock_row(Subscription, sub.id)
        before = retention(account)
        row = RecordingRetention.create(account=account, days=data["days"],
                                        effective_from=first_unbilled_day(account),
                                        changed_by=actor)  # fmt: skip
        audit.record(actor, "recording_retention.update", object_type="recording_retention",
                     object_id=account.id, account=account,
                     before={"days": before.days}, after={"days": row.days,
                                                          "effective_from": str(row.effective_from)})  # fmt: skip
    return row
