"""List queries: the one implementation of search, filters, sorting and paging behind every
list of the panel and the API (accounts, users, subscriptions, invoices, the audit log).

A list is declared once, as a :class:`Listing`: its query-argument schema (``q``, its filters,
``sort``, ``page``, ``per_page``), the columns it may be sorted by and what ``q`` searches.
The API operation declares the same schema with ``@blp.arguments(listing.args, location=
"query")`` (so the OpenAPI document lists every parameter, its bounds and the sort columns)
and the panel page loads the same schema from its query string (:func:`parse`), so the two
take the same parameters and refuse the same bad ones: an unknown sort column, page 0, a
``per_page`` past :data:`MAX_PER_PAGE`, a malformed date or a reversed date range answer 422
naming the parameter (the panel shows the message above the list).

Scoping stays with :mod:`core.rbac`: the caller passes the query already scoped to its
subtree, and a filter naming an account resolves it through ``rbac.get_account`` (404 for
an account outside the subtree, exactly like a missing one, never "no results" that would
tell it exists).

Every sort ends on the row id in the same direction, so pages never repeat or skip a row
when values tie. Sorts are whitelisted to indexed columns (core migration 7 adds the ones the
tables lacked), so a page is an index range and a LIMIT, also at 100,000 accounts.

**The API's answer stays a JSON array** (what every existing client reads); the paging is in
the headers: ``X-Total-Count`` (rows matching, all pages) and ``Link`` (RFC 8288: ``first``,
``prev``, ``next``, ``last``), see :func:`api_headers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

import peewee as pw
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from core.errors import ValidationFailed, load
from core.fields import Text

MAX_PAGE = 1_000_000
MAX_PER_PAGE = 500
SEARCH_MAX = 100  # characters of ``q``


class ListArgs(Schema):
    """``page`` and ``per_page`` of every list; a value sent empty (``?status=`` from a
    panel form left on "any") counts as not sent, in the panel and the API alike."""

    # marshmallow 4 ignores a validator's False: ranges must raise, as validate.Range does
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(1, MAX_PAGE, error="must be a page number from {min} to {max}"),
        metadata={"description": "page number, from 1"},
    )
    per_page = fields.Integer(
        load_default=50,
        validate=validate.Range(1, MAX_PER_PAGE, error="must be from {min} to {max}"),
        metadata={"description": f"rows per page, at most {MAX_PER_PAGE}"},
    )

    @pre_load
    def _drop_empty(self, data, **kwargs):
        if hasattr(data, "items"):
            return {k: v for k, v in _pairs(data) if v != ""}
        return data


def _pairs(data) -> Iterable[tuple[str, object]]:
    """Name and value of each argument (a MultiDict's first value, as ``data[key]`` gives)."""
    return [(key, data[key]) for key in list(data)]


def search_field(what: str) -> Text:
    return Text(SEARCH_MAX, load_default=None, card_numbers=False,
                metadata={"description": f"search: {what}"})  # fmt: skip


def sort_field(columns: Iterable[str], default: str) -> Text:
    """``sort``: one of ``columns``, ``-`` before it for descending."""
    names = list(columns)
    choices = names + [f"-{n}" for n in names]
    return Text(
        40,
        load_default=default,
        card_numbers=False,
        validate=validate.OneOf(choices, error="must be one of " + ", ".join(choices)),
        metadata={
            "description": f"sort column, '-' before it for descending; default {default}",
            "enum": choices,
        },
    )


class Day(fields.Date):
    """A day written exactly YYYY-MM-DD (strptime alone would take "2026-1-1")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def date_field(what: str, **kwargs) -> fields.Date:
    return Day(
        load_default=None,
        format="%Y-%m-%d",
        error_messages={"invalid": "must be a date in YYYY-MM-DD format"},
        metadata={"description": f"{what} (YYYY-MM-DD)"},
        **kwargs,
    )


def check_range(data: dict, low: tuple[str, str], high: tuple[str, str]) -> None:
    """A date range given reversed is refused, naming its end as the caller sends it.
    ``low`` and ``high`` are (attribute, parameter name)."""
    first, last = data.get(low[0]), data.get(high[0])
    if first and last and last < first:
        raise ValidationError(
            f"must not be before '{low[1]}' ({first.isoformat()})", field_name=high[1]
        )


def day_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """Timestamps from the start of ``first`` to the end of ``last`` (both days included):
    ``at >= low`` and ``at < high``; None where open (also after 9999-12-31)."""
    low = datetime.combine(first, time.min) if first else None
    high = None
    if last and last < date.max:
        high = datetime.combine(last + timedelta(days=1), time.min)
    return low, high


def prefix_range(column, prefix: str) -> pw.Expression:
    """``column`` starts with ``prefix`` as a range an index serves (LIKE is not, on
    PostgreSQL's locale collations): from ``prefix`` up to the next string of its length,
    compared byte by byte (``COLLATE "C"`` on PostgreSQL, with an index made for it by core
    migration 7)."""
    from core.db import is_postgres

    if is_postgres():  # byte order, as in rbac.in_subtree: a locale collation skips '.'
        column = column.collate('"C"')
    stem = prefix.rstrip("\U0010ffff")  # no character comes after U+10FFFF: carry
    if not stem:
        return column >= prefix
    high = stem[:-1] + chr(ord(stem[-1]) + 1)
    return (column >= prefix) & (column < high)


# -- a list ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """One list: ``args`` its query schema; ``sorts`` public sort name -> column (the id
    tiebreak is added); ``search`` builds the condition of ``q``; ``filters`` maps an
    argument to a function ``(query, value, user) -> query``."""

    name: str
    model: type[pw.Model]
    args: type[Schema]
    sorts: dict[str, object]
    search: Callable[[str], pw.Expression] | None = None
    filters: dict[str, Callable] = field(default_factory=dict)

    def filtered(self, query: pw.ModelSelect, args: dict, user) -> pw.ModelSelect:
        """``query`` (already scoped to ``user``'s subtree) with the filters and search of
        ``args``: what the total counts."""
        for name, apply in self.filters.items():
            if args.get(name) is not None:
                query = apply(query, args[name], user)
        q = (args.get("q") or "").strip()
        if q and self.search is not None:
            query = query.where(self.search(q))
        return query

    def ordered(self, query: pw.ModelSelect, args: dict) -> pw.ModelSelect:
        """The page of ``args`` of an already filtered query: sorted, id last, LIMIT/OFFSET."""
        sort = args.get("sort") or ""
        column = self.sorts[sort.lstrip("-")]
        tiebreak = self.model.id
        columns = [column] if column is tiebreak else [column, tiebreak]
        order = [c.desc() for c in columns] if sort.startswith("-") else columns
        return query.order_by(*order).paginate(args["page"], args["per_page"])

    def apply(self, query: pw.ModelSelect, args: dict, user, *, count: bool = True) -> Page:
        """The page ``args`` ask for, of ``query`` (already scoped to ``user``'s subtree).
        ``count=False`` skips counting every match (the search box shows a few, no total):
        the page's total is then the rows it holds."""
        query = self.filtered(query, args, user)
        rows = list(self.ordered(query, args))
        total = len(rows)
        if count and (len(rows) == args["per_page"] or args["page"] > 1):
            total = query.count()
        return Page(rows, total, args["page"], args["per_page"])


@dataclass
class Page:
    items: list
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first_row(self) -> int:
        return min((self.page - 1) * self.per_page + 1, self.total) if self.items else 0

    @property
    def last_row(self) -> int:
        return (self.page - 1) * self.per_page + len(self.items)

    def neighbours(self) -> dict[str, int]:
        """Page numbers of ``first``, ``prev``, ``next``, ``last`` (those that exist)."""
        out = {"first": 1, "last": self.pages}
        if self.page > 1:
            out["prev"] = min(self.page - 1, self.pages)
        if self.page < self.pages:
            out["next"] = self.page + 1
        return out


def query_string(args: dict, **changes) -> str:
    """The query string of ``args`` (as sent, strings) with ``changes``; None drops one."""
    merged = {k: v for k, v in {**args, **changes}.items() if v not in (None, "")}
    return urlencode(merged)


def api_headers(page: Page, base_url: str, args: dict) -> dict[str, str]:
    """``X-Total-Count`` and an RFC 8288 ``Link`` header for an API list answer."""
    links = ", ".join(
        f'<{base_url}?{query_string(args, page=number)}>; rel="{rel}"'
        for rel, number in page.neighbours().items()
    )
    return {"X-Total-Count": str(page.total), "Link": links}


API_HEADERS = {
    "X-Total-Count": {
        "description": "rows matching the query, over all pages",
        "schema": {"type": "integer"},
    },
    "Link": {
        "description": "RFC 8288 links to the first, prev, next and last pages (the same "
        "query with another page)",
        "schema": {"type": "string"},
    },
}


def load_args(schema: type[Schema], values, **defaults) -> dict:
    """Load a panel page's query string with an argument schema (``defaults`` for arguments
    not sent). Bad values raise ValidationFailed naming each parameter, as the API does."""
    data = dict(_pairs(values))
    for key, value in defaults.items():
        data.setdefault(key, value)
    return load(schema(unknown=EXCLUDE), data)


def panel_list(listing: Listing, query: pw.ModelSelect, user, values, **defaults):
    """A panel list page's ``(page, sent, error)``: the page asked for, the arguments as sent
    (for links that keep them) and, for bad arguments, the message to show above an empty
    list (the page then answers 422)."""
    sent = sent_args(values, listing)
    try:
        args = load_args(listing.args, values, **defaults)
    except ValidationFailed as exc:
        return Page([], 0, 1, 1), sent, exc.message
    return listing.apply(query, args, user), sent, None


def sent_args(values, listing: Listing) -> dict[str, str]:
    """The list's arguments as sent (strings), for links that keep them."""
    names = {f.data_key or name for name, f in listing.args._declared_fields.items()}
    return {k: v for k, v in _pairs(values) if k in names and v != ""}


__all__ = [
    "API_HEADERS",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "ListArgs",
    "Listing",
    "Page",
    "api_answer",
    "api_headers",
    "check_range",
    "date_field",
    "day_bounds",
    "load_args",
    "panel_list",
    "prefix_range",
    "query_string",
    "search_field",
    "sent_args",
    "sort_field",
]


def api_answer(listing: Listing, query: pw.ModelSelect, args: dict, user):
    """An API list operation's return value: the page's rows (the JSON array clients read)
    and the paging headers, for flask-smorest's ``(body, headers)`` return."""
    from flask import request

    page = listing.apply(query, args, user)
    return page.items, api_headers(page, request.base_url, sent_args(request.args, listing))
