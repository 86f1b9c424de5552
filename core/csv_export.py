"""The one CSV writer of every export (statements, activity reports, RAW invoices, plugin
reports): cells a spreadsheet would run as a formula are neutralised.

**The rule** (OWASP "CSV Injection"): a text cell that begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is written with a single quote in front (``'=SUM(A1)``),
which spreadsheets show as text and never evaluate. A cell that begins with a single quote
gets one more, so that :func:`unescape_cell` (one leading quote off) gives back exactly what
was written, for machine readers such as ``core.billing.invoicing.raw.parse``.

**Numbers are exempt.** A cell that is entirely a plain decimal number (``-6.66``, ``12``,
``0.50``: an optional minus, digits, an optional fraction) is written as it is, whether the
exporter passes an int, a Decimal or the string it formatted: a spreadsheet reads it as a
number, never as a formula, and credit amounts must stay numbers. Anything else that begins
with ``-`` (``-1+1``, ``-A1``) is text and gets the quote.

Use :func:`writer` instead of ``csv.writer`` (a test keeps ``csv.writer`` out of the rest of
the code base); plugins use it the same way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def safe_cell(value) -> str:
    """``value`` as the text of a CSV cell, neutralised when it could start a formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if not text or is_number(text):
        return text
    if text.startswith(FORMULA_STARTS) or text.startswith("'"):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """What :func:`safe_cell` was given (for readers of our own files)."""
    return text[1:] if text.startswith("'") else text


class SafeWriter:
    """``csv.writer`` with every cell passed through :func:`safe_cell`. A row holding a
    line break the line terminator does not name (a CR under ``\\n`` line ends) is written
    fully quoted, which ``csv.writer`` alone does not do, so the row cannot come apart."""

    def __init__(self, out, **options):
        options.setdefault("lineterminator", "\n")
        self._writer = csv.writer(out, **options)
        self._quoted = csv.writer(out, **{**options, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable) -> None:
        cells = [safe_cell(v) for v in row]
        broken = any("\r" in c or "\n" in c for c in cells)
        (self._quoted if broken else self._writer).writerow(cells)

    def writerows(self, rows: Iterable[Iterable]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out, **options) -> SafeWriter:
    return SafeWriter(out, **options)


def rows_to_text(rows: Iterable[Iterable], **options) -> str:
    out = io.StringIO()
    writer(out, **options).writerows(rows)
    return out.getvalue()
