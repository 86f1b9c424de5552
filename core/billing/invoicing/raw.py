"""The RAW invoice format: a documented CSV a machine can read back exactly.

Layout (UTF-8, ``\\n`` line ends)::

    # billhive-raw: 1
    # kind: invoice
    # number: INV-000001
    # issue_date: 2026-11-01
    # due_date: 2026-11-15
    # supply_period: 2026-10-01/2026-10-31   (both inclusive; empty: supplied on the issue date)
    # issuer: Billhive Demo GmbH               (legal name)
    # issuer_address: Friedrichstr. 1; 10117 Berlin; Germany      (lines joined with "; ")
    # issuer_country: DE                     (ISO 3166 alpha-2)
    # issuer_vat_id: DE136695976
    # issuer_registration: HRB 12345
    # account: Contoso Ltd
    # account_address: 1 rue de Rivoli; 75001 Paris; France
    # account_country: FR
    # account_vat_id: FR40303265045
    # account_registration:
    # period: 2026-10-01/2026-11-01          (start inclusive / end exclusive; empty if none)
    # currency: EUR
    # tax_rate: 0                            (percent)
    # subtotal: 1234.56                      (major units, exact)
    # tax: 0
    # total: 1234.56
    # reverse_charge: Reverse charge: VAT to be accounted for by the recipient (...)  (or empty)
    # amount_due: 1234.56                    (when the file was made)
    # payment_iban: DE89 3704 0044 0532 0130 00
    # payment_bic: COBADEFFXXX
    # payment_reference: INV-000001
    # payment_terms_days: 14
    # payment_text:                          (free-text instructions)
    # credit_for: INV-000001                 (credit notes only, which have no payment_* lines)
    position,description,quantity,unit,unit_price,amount_minor,amount,product_code,group
    1,Hosting (10 days of 31),2,seat,12.5,806,8.06,HOST,

Unit prices are net of tax; tax is charged once on the subtotal (one rate per invoice).

``amount_minor`` is the integer amount in the currency's minor units; ``amount`` is the same in
major units as a plain decimal (no thousands separators). Lines sum to ``subtotal`` exactly.
Read it by skipping lines starting with ``#`` and feeding the rest to a CSV reader.

**Spreadsheet formulas are neutralised** (``core.csv_export``, the writer of every export): a
text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or a single
quote is written with one single quote in front (``'=SUM(A1)``); cells that are plain decimal
numbers (``-6.66``, ``806``) are written as they are. A header value is split the way a
spreadsheet splits the line, at commas, and each piece gets the same rule, so
``# account: x,=cmd`` is written ``# account: x,'=cmd``. To read a file back exactly, take
one leading single quote off every text cell and header piece (``parse`` does).
"""

from __future__ import annotations

import csv
import io

from core import csv_export
from core.billing.money import to_decimal

COLUMNS = [
    "position",
    "description",
    "quantity",
    "unit",
    "unit_price",
    "amount_minor",
    "amount",
    "product_code",
    "group",
]


def render(document: dict) -> bytes:
    currency = document["currency"]
    period = ""
    if document.get("period_start"):
        period = f"{document['period_start']}/{document.get('period_end') or ''}"
    supply = document.get("supply_period")
    issuer, buyer = document["issuer"], document["recipient"]
    header = {
        "billhive-raw": "1",
        "kind": document["kind"],
        "number": document["number"],
        "issue_date": document.get("issue_date") or "",
        "due_date": document.get("due_date") or "",
        "supply_period": f"{supply['start']}/{supply['end']}" if supply else "",
    }
    for prefix, party, name_key in (("issuer", issuer, "issuer"), ("account", buyer, "account")):
        header[name_key] = party["name"]
        header[f"{prefix}_address"] = "; ".join(party.get("address") or [])
        header[f"{prefix}_country"] = party.get("country", "")
        header[f"{prefix}_vat_id"] = party.get("vat_id", "")
        header[f"{prefix}_registration"] = party.get("registration_number", "")
    header |= {
        "period": period,
        "currency": currency,
        "tax_rate": document["tax_rate"].rstrip("%"),
        "subtotal": str(to_decimal(document["subtotal_minor"], currency)),
        "tax": str(to_decimal(document["tax_minor"], currency)),
        "total": str(to_decimal(document["total_minor"], currency)),
        "reverse_charge": document.get("reverse_charge_statement", ""),
        "amount_due": str(to_decimal(document.get("amount_due_minor", 0), currency)),
    }
    payment = document.get("payment")
    if payment:
        header |= {
            "payment_iban": payment["iban"],
            "payment_bic": payment["bic"],
            "payment_reference": payment["reference"],
            "payment_terms_days": "" if payment["terms_days"] is None else payment["terms_days"],
            "payment_text": payment["text"],
        }
    if document.get("credit_note_for"):
        header["credit_for"] = document["credit_note_for"]
    out = io.StringIO()
    for key, value in header.items():
        out.write(f"# {key}: {_header_value(value)}\n")
    writer = csv_export.writer(out)
    writer.writerow(COLUMNS)
    for line in document["lines"]:
        writer.writerow(
            [
                line["position"],
                line["description"],
                line["quantity"],
                line["unit"],
                line["unit_price"],
                line["amount_minor"],
                str(to_decimal(line["amount_minor"], currency)),
                line["product_code"],
                line["group"] or "",
            ]
        )
    return out.getvalue().encode("utf-8")


def _header_value(value) -> str:
    """One line; each comma-separated piece neutralised like a cell (see the module doc)."""
    text = " ".join(str(value).splitlines())
    return ",".join(csv_export.safe_cell(piece) for piece in text.split(","))


def parse(data: bytes) -> tuple[dict, list[dict]]:
    """Read a RAW file back: (header, lines as dicts of strings), exactly as rendered."""
    header, body = {}, []
    for text in data.decode("utf-8").splitlines():
        if text.startswith("# "):
            key, _, value = text[2:].partition(": ")
            header[key] = ",".join(csv_export.unescape_cell(p) for p in value.split(","))
        else:
            body.append(text)
    lines = [
        {k: csv_export.unescape_cell(v) for k, v in row.items()} for row in csv.DictReader(body)
    ]
    return header, lines
