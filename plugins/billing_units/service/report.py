"""The billing-unit report: what the account was **invoiced**, per billing unit.

A unit's cost for a period is the period's invoiced charges allocated to it, never a
recomputation from today's prices and assignments: so the report's total equals what the
account was billed for those charges, whatever changed since (a number moved to another unit,
a unit renamed or deleted, a price changed), and a credit note or a void shows at once.

Which lines: the lines of the account's invoices that are not void, written by this plugin
(``source="billing_units"``: calls, number rental, seats; see :func:`.units.charges`) or
rating its recording storage (the usage line of a recording-storage subscription, see
:mod:`plugins.billing_units.service.recording`), whose service began in the period; minus the lines
of credit notes (not void) that credit them. Amounts are net of tax, in minor units.

How a line is allocated to units:

* calls, number rental and seats were allocated **when they were billed**: the invoice
  groups them per unit (calls by the unit holding the number, rental by the unit holding each
  number, a seat by the first unit by name its user belongs to, directly or through a team),
  and the line's ``group`` says which; the report sums lines per group. A group that is no
  longer a unit's name (renamed, deleted) stays under the name it was billed with.
* recording storage is one usage line rated by the seller's plan; it is shared out over the
  units in proportion to the storage each unit used in the line's days
  (:func:`allocate`, largest remainder: the shares add up to the line, to the minor unit).

A credit note's line counts where the line it credits counts (same period, same unit, same
column, same allocation), so a fully credited invoice contributes zero; ``credited`` says how
much of a row's total credits took off (already included in the columns).
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from core.kit import Account, Invoice, InvoiceLine, csv_export, to_decimal
from plugins.billing_units.service import recording
from plugins.billing_units.service import units as svc

UNASSIGNED = "Unassigned"
SOURCE = "billing_units"
COLUMNS = {"BU-CALLS": "usage", "BU-NUMBER": "rental", "BU-SEAT": "seats"}
AMOUNTS = ("usage", "rental", "seats", "recording", "total")  # total: the sum of the four


def allocate(amount: int, weights: dict) -> dict:
    """Share ``amount`` (minor units, any sign) over the keys of ``weights`` (non-negative
    numbers) in proportion, exactly: each key gets the floor of its share, then the minor
    units left go one each to the largest remainders (ties: the order of ``weights``). The
    shares always add up to ``amount``. Without any positive weight, nothing is allocated
    (an empty dict): the caller decides where such an amount goes."""
    positive = {k: Fraction(Decimal(w)) for k, w in weights.items() if Decimal(w) > 0}
    total = sum(positive.values())
    if not positive:
        return {}
    sign = -1 if amount < 0 else 1
    whole = abs(amount)
    shares, rests = {}, []
    for index, (key, weight) in enumerate(positive.items()):
        exact = whole * weight / total
        shares[key] = int(exact)  # floor: exact >= 0
        rests.append((exact - shares[key], -index, key))
    left = whole - sum(shares.values())
    for _, _, key in sorted(rests, reverse=True)[:left]:
        shares[key] += 1
    return {k: sign * v for k, v in shares.items()}


def _lines(account: Account, period: tuple[date, date], sources: set[str]) -> list:
    """The lines of ``sources`` on the account's invoices that are not void, whose service
    began in ``period``."""
    return list(
        InvoiceLine.select(InvoiceLine, Invoice)
        .join(Invoice)
        .where(
            (Invoice.account == account.id)
            & (Invoice.kind == "invoice")
            & (Invoice.status != "void")
            & (Invoice.status != "draft")
            & (InvoiceLine.source.in_(list(sources)))
            & (InvoiceLine.service_start >= period[0])
            & (InvoiceLine.service_start < period[1])
        )
        .order_by(Invoice.id, InvoiceLine.position)
    )


def _credits(account: Account, line_ids: list[int]) -> list:
    """Lines of credit notes (not void) crediting ``line_ids``."""
    if not line_ids:
        return []
    out = []
    for start in range(0, len(line_ids), 500):
        chunk = [f"credit:{i}" for i in line_ids[start : start + 500]]
        out += list(
            InvoiceLine.select(InvoiceLine, Invoice)
            .join(Invoice)
            .where(
                (Invoice.account == account.id)
                & (Invoice.kind == "credit_note")
                & (Invoice.status != "void")
                & (Invoice.status != "draft")
                & (InvoiceLine.source.in_(chunk))
            )
            .order_by(Invoice.id, InvoiceLine.position)
        )
    return out


def invoiced(account: Account, period: tuple[date, date], current_units: list,
             recording=None) -> dict:  # fmt: skip
    """Invoiced charges of ``period`` per unit (see the module docstring).

    ``current_units`` are the account's units (ordered by name): each gets a row, charged or
    not. ``recording`` is ``(sources, shares)``: the invoice-line sources that rate the
    account's recording storage, and ``shares(line) -> {unit name: weight}`` giving how
    the storage of that line's days was spread over units."""
    rec_sources, rec_shares = recording or (set(), None)
    lines = _lines(account, period, {SOURCE} | set(rec_sources))
    credits = _credits(account, [line.id for line in lines])
    by_id = {line.id: line for line in lines}
    rows: dict[str, dict] = {}
    ids = {u.name: u.id for u in current_units}

    def row(name: str) -> dict:
        if name not in rows:
            rows[name] = {"unit_id": ids.get(name), "unit": name, "numbers": 0, "users": 0,
                          "credited": 0, **{k: 0 for k in AMOUNTS}}  # fmt: skip
        return rows[name]

    for unit in current_units:
        row(unit.name)
    invoices: dict[int, Invoice] = {}
    weights_of: dict[int, dict] = {}

    def column(line) -> str:
        return COLUMNS.get(line.product_code, "usage") if line.source == SOURCE else "recording"

    def split(line, original) -> dict[str, int]:
        """unit name -> the part of ``line``'s amount it carries (allocated as ``original``)."""
        if original.source == SOURCE:
            return {original.group or UNASSIGNED: line.amount}
        if original.id not in weights_of:
            weights_of[original.id] = rec_shares(original) if rec_shares else {}
        shares = allocate(line.amount, weights_of[original.id])
        return shares or {UNASSIGNED: line.amount}

    for line in lines:
        invoices[line.invoice.id] = line.invoice
        for name, amount in split(line, line).items():
            r = row(name)
            r[column(line)] += amount
            r["total"] += amount
            if column(line) == "rental":
                r["numbers"] += int(line.quantity)
            elif column(line) == "seats":
                r["users"] += int(line.quantity)
    for line in credits:  # in the column of the line credited; also counted in "credited"
        invoices[line.invoice.id] = line.invoice
        original = by_id[int(line.source.split(":", 1)[1])]
        for name, amount in split(line, original).items():
            r = row(name)
            r[column(original)] += amount
            r["total"] += amount
            r["credited"] += amount
    ordered = [rows[u.name] for u in current_units]
    ordered += [rows[n] for n in sorted(rows) if n not in ids and n != UNASSIGNED]
    ordered.append(row(UNASSIGNED))
    for r in ordered:
        r["recurring"] = r["rental"] + r["seats"]
        r["billed_as"] = r["unit_id"] is None and r["unit"] != UNASSIGNED
    totals = {k: sum(r[k] for r in ordered)
              for k in ("numbers", "users", "recurring", "credited", *AMOUNTS)}  # fmt: skip
    return {
        "units": ordered,
        "totals": totals,
        "invoices": [
            {"id": i.id, "number": i.number, "kind": i.kind, "status": i.status}
            for i in sorted(invoices.values(), key=lambda i: i.id)
        ],
    }


def billed_amount(account: Account, period: tuple[date, date], sources: set[str]) -> int:
    """What the account was billed, net of tax, for the lines of ``sources`` whose service
    began in ``period``, credits deducted: the figure the report's total must equal. Kept
    apart from :func:`invoiced` (no allocation at all) so each checks the other."""
    lines = _lines(account, period, sources)
    total = sum(line.amount for line in lines)
    total += sum(line.amount for line in _credits(account, [line.id for line in lines]))
    return total


def for_period(actor, account: Account, period: tuple[date, date]) -> dict:
    """The billing-unit report of ``period``: the invoiced charges per unit
    (:func:`invoiced`), plus, clearly apart, an estimate of the days of
    the period not invoiced yet (today's assignments and prices; the bill run decides)."""
    svc.require_view(actor, account)
    data = invoiced(account, period, svc.units_of(account), recording.report_allocation(account))
    settings = svc.settings_for(account)
    through = svc.billed_through(account)
    begin = max(period[0], through or period[0])
    pending = None
    if begin < period[1]:
        estimate = svc.compute_report(account, (begin, period[1]))
        pending = {
            "start": begin,
            "end": period[1],
            "last_day": period[1] - timedelta(days=1),
            "units": [{"unit": r["unit"], "total": r["total"]} for r in estimate["units"]],
            "total": estimate["totals"]["total"],
        }
    return {
        "account_id": account.id,
        "currency": account.currency,
        "start": period[0],
        "end": period[1],
        "number_rental_price": settings.number_rental_price,
        "seat_price": settings.seat_price,
        "billed_through": through,
        **data,
        "not_invoiced": pending,
    }


REPORT_CSV_COLUMNS = ("usage", "rental", "seats", "recording", "total", "credited")


def as_csv(data: dict) -> str:
    """The invoiced report as CSV, major units; the last row is the total."""
    buf = io.StringIO()
    writer = csv_export.writer(buf)
    cur = data["currency"]
    writer.writerow(["unit", "numbers", "seats_billed", "calls", "number_rental", "seats",
                     "recording_storage", "total", "credited_included", "currency"])  # fmt: skip
    for r in data["units"] + [{**data["totals"], "unit": "TOTAL"}]:
        writer.writerow(
            [r["unit"], r["numbers"], r["users"]]
            + [str(to_decimal(r[k], cur)) for k in REPORT_CSV_COLUMNS]
            + [cur]
        )
    return buf.getvalue()


def recording_page(account: Account, period: tuple[date, date]) -> dict:
    """What the Call recording sub-tab and its API show for ``period``."""
    used = recording.storage_by_unit(account, period)
    data = invoiced(account, period, svc.units_of(account), recording.report_allocation(account))
    charges = {r["unit"]: r["recording"] for r in data["units"]}
    names = [r["unit"] for r in data["units"]]
    names += [n for n in sorted(used) if n not in names]
    rows = [{"unit": n, "gigabytes": used.get(n, Decimal(0)), "charges": charges.get(n, 0)}
            for n in names]  # fmt: skip
    subs = recording.subscriptions(account)
    current = recording.retention(account)
    return {
        "account_id": account.id,
        "currency": account.currency,
        "start": period[0],
        "end": period[1],
        "units": rows,
        "total_gigabytes": sum((r["gigabytes"] for r in rows), Decimal(0)),
        "total_charges": data["totals"]["recording"],
        "retention_days": current.days,
        "retention_since": current.effective_from,
        "plans": [
            {
                "subscription_id": s.id,
                "plan": s.plan.name,
                "usage_rate": s.plan.usage_rate,
                "unit": s.plan.product.unit,
                "billed_through": s.billed_through,
            }
            for s in subs
        ],  # fmt: skip
    }
