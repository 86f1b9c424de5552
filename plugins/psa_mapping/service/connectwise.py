"""ConnectWise Manage (ConnectWise PSA) REST client used by the ``psa_mapping`` plugin.

Talks to the REST API v3.0 at ``{site_url}/v4_6_release/apis/3.0/``:

* Basic auth, username ``{companyId}+{publicKey}``, password ``{privateKey}``;
* a ``clientId`` header on every request (the integration's GUID from
  developer.connectwise.com);
* JSON bodies; list endpoints take ``page`` (1-based) and ``pageSize`` (at most
  1000) and a ``conditions`` filter such as ``name like "Acme%"``;
* partial updates are JSON-patch lists: ``[{"op": "replace", "path": "quantity",
  "value": 5}]``.

Failures surface as :class:`ConnectWiseError` with a ``kind`` that a UI can act
on. Idempotent calls (GET/PATCH/PUT/DELETE) are retried with exponential backoff
on timeouts, connection errors, 429 and 5xx. A ``Retry-After`` header (seconds
or an HTTP date) is honoured on every method, POST included, up to a ceiling
(``retry_after_max``, default 120 s): a server asking for a longer wait is not
called early, the call fails and the next sync tries again.

POST is never blindly retried: :meth:`ConnectWiseClient.upsert_addition` writes
a Billhive key into the addition. When a POST was refused (429, 5xx) it may be
sent again; when its answer was lost (a timeout: ConnectWise may store it a
moment later) the client only looks for the key, with backoff, for at most
``confirm_window`` seconds, and otherwise raises ``kind="uncertain"``: the sync
item stays uncertain until the next sync resolves it by key. Additions beyond the
first carrying one key (the leftovers of older clients or of a person) are
cancelled at ConnectWise (``cancelledDate``) and listed in
:attr:`ConnectWiseClient.cancelled`.

Numbers: every JSON number that ConnectWise returns is parsed as
:class:`~decimal.Decimal` (never float), and Decimals we send are written as
JSON number literals from their exact decimal text (``Decimal("12.5")`` is sent
as ``12.5``), so no binary-float rounding happens on our side. ConnectWise
stores these fields as doubles, so ``2.12345678901234567890`` comes back as
``2.1234567890123457``: quantities and prices are compared at that precision
(:func:`same_number`), so an unchanged value is never PATCHed again.

Every connection goes through the outbound-URL guard of ``core.outbound`` (the
site URL is set by an account admin): https only unless the operator allows
http, no loopback/private/link-local/... addresses, checked for every resolved
address when connecting, and one message for every way a site cannot be reached.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from core.kit import outbound

log = logging.getLogger(__name__)

API_PATH = "/v4_6_release/apis/3.0/"
#: ``application/json`` asks for the server's current API version. ConnectWise also
#: accepts ``application/vnd.connectwise.com+json; version=2022.1`` to pin one; the
#: fields used here (companies, catalog, agreements, additions) have been stable
#: across versions, so we do not pin.
ACCEPT = "application/json"
MAX_PAGE_SIZE = 1000
#: Guard against a server that ignores ``page`` and keeps answering full pages.
MAX_PAGES = 10_000
#: Largest sleep between retries of our own exponential backoff.
MAX_RETRY_SLEEP = 30.0
#: Longest ``Retry-After`` honoured by default; a server asking for more is not called
#: again by this client (the call fails, the next sync retries).
RETRY_AFTER_MAX = 120.0
#: How long, by default, the client looks for an addition whose POST timed out.
CONFIRM_WINDOW = 30.0

#: ``uncertain``: a POST's answer was lost and the addition did not show up in time;
#: the next sync looks for it by its key (never retried blindly).
ERROR_KINDS = frozenset(
    {"auth", "not_found", "timeout", "server", "bad_request", "connection", "uncertain"}
)
RETRYABLE_KINDS = frozenset({"timeout", "server", "connection"})

# Addition field limits (ConnectWise OpenAPI model "Addition").
INVOICE_DESCRIPTION_MAX = 6000

# The Billhive key is kept in the addition's ``invoiceDescription`` as a trailing
# ``[bh:KEY]`` (or ``[bh:KEY;level=N]``) marker. invoiceDescription is a plain
# writable string of up to 6000 characters on every Manage version, so the marker
# survives round trips. The cost is that the marker is printed on the customer's
# invoice; ``description`` or ``serialNumber`` would hide it, but we could not
# confirm from the public docs that ConnectWise keeps a free-text ``description``
# on additions (it is normally copied from the catalog item), and losing the key
# would mean duplicate billing, so we chose the field that is certainly kept.
# ``level`` (the mapping's "Level") has no field of its own on an addition; it
# rides in the marker so that Billhive can read it back.
_KEY_CHARS = r"[^\[\];\s]"
_MARKER_RE = re.compile(r"\[bh:(" + _KEY_CHARS + r"+)(?:;level=(-?\d+))?\]")
_KEY_RE = re.compile(_KEY_CHARS + r"{1,100}")

_SECRET_MASK = "••••••"


# --------------------------------------------------------------------------- errors


class ConnectWiseError(Exception):
    """A failed ConnectWise call.

    ``kind`` is one of ``auth``, ``not_found``, ``timeout``, ``server``,
    ``bad_request``, ``connection``; ``status`` is the HTTP status when there was
    a response; ``message`` is meant for a person; ``code`` and ``details`` carry
    ConnectWise's own error ``code`` and ``errors`` list when it sent them.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        status: int | None = None,
        *,
        code: str | None = None,
        details: list | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown ConnectWiseError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []
        self.attempts = attempts
        self.retry_after = retry_after  # seconds the server asked us to wait (429/503)
        #: the message without anything the server said (for the connection test)
        self.plain = message

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (timeouts, 5xx, 429, network)."""
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ConnectWiseError(kind={self.kind!r}, status={self.status!r}, {self.message!r})"


# ------------------------------------------------------------------------- settings


def _mask(secret: str | None) -> str:
    """``"••••••ab12"`` for a long secret; bullets only when showing 4 characters
    would reveal too much of a short one."""
    if not secret:
        return ""
    if len(secret) < 12:
        return _SECRET_MASK
    return _SECRET_MASK + secret[-4:]


def _safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return "(invalid URL)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc="••••••@" + host).geturl()


def _normalise_site_url(site_url: str) -> str:
    url = (site_url or "").strip().rstrip("/")
    # People paste the full API URL; accept it and keep the site part.
    for suffix in (API_PATH.rstrip("/"), "/v4_6_release/apis/3.0", "/v4_6_release"):
        if url.lower().endswith(suffix.lower()):
            url = url[: -len(suffix)].rstrip("/")
    return url


@dataclass(repr=False)
class ConnectWiseSettings:
    """Connection settings for one ConnectWise Manage site.

    ``site_url`` is the API host, e.g. ``https://api-na.myconnectwise.net`` for
    ConnectWise-hosted sites or ``https://cw.example.com`` on premises; a pasted
    ``.../v4_6_release/apis/3.0`` suffix is tolerated. ``timeout`` is seconds per
    HTTP call; ``max_retries`` is how many times a retryable call is repeated after
    the first try; ``backoff`` is the first retry's delay, doubled on each retry.
    """

    site_url: str
    company_id: str
    public_key: str
    private_key: str
    client_id: str
    timeout: float = 10.0
    max_retries: int = 3
    backoff: float = 0.5

    @property
    def base_url(self) -> str:
        return _normalise_site_url(self.site_url)

    @property
    def api_url(self) -> str:
        """``https://host/v4_6_release/apis/3.0/`` (with the trailing slash)."""
        return self.base_url + API_PATH

    @property
    def username(self) -> str:
        return f"{self.company_id}+{self.public_key}"

    def validate(self) -> dict[str, str]:
        """Field name → message for every setting that cannot work; empty when fine."""
        errors: dict[str, str] = {}

        url = _normalise_site_url(self.site_url)
        if not url:
            errors["site_url"] = "Site URL is required, e.g. https://api-na.myconnectwise.net"
        else:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https"):
                errors["site_url"] = "Site URL must start with https://"
            elif not parts.hostname:
                errors["site_url"] = "Site URL has no host name"
            elif parts.username or parts.password:
                errors["site_url"] = (
                    "Site URL must not contain a user name or password; use the key fields instead"
                )
            elif parts.query or parts.fragment:
                errors["site_url"] = "Site URL must not contain '?' or '#' parts"
            elif any(ch.isspace() for ch in url):
                errors["site_url"] = "Site URL must not contain spaces"
            else:
                try:
                    parts.port  # noqa: B018 - raises ValueError on a bad port
                except ValueError:
                    errors["site_url"] = "Site URL has an invalid port"
                else:
                    problem = outbound.url_problem(url)
                    if problem:
                        errors["site_url"] = problem

        def text_field(name: str, label: str, forbidden: str = "") -> None:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                errors[name] = f"{label} is required"
            elif any(ch.isspace() for ch in value):
                errors[name] = f"{label} must not contain spaces (check for a pasted blank)"
            elif forbidden and any(ch in value for ch in forbidden):
                shown = " or ".join(repr(ch) for ch in forbidden)
                errors[name] = f"{label} must not contain {shown}"

        # The Basic-auth user name is "company+publicKey": neither part may hold a
        # ':' (it ends the user name), and a '+' in the company id would be ambiguous.
        text_field("company_id", "Company ID", "+:")
        text_field("public_key", "Public key", ":")
        text_field("private_key", "Private key")
        text_field("client_id", "Client ID (the integration GUID from developer.connectwise.com)")
        if "client_id" in errors and not (self.client_id or "").strip():
            errors["client_id"] = (
                "Client ID is required: register the integration at "
                "developer.connectwise.com and paste its GUID"
            )

        if not _is_number(self.timeout) or not 0 < float(self.timeout) <= 300:
            errors["timeout"] = "Timeout must be a number of seconds above 0 and at most 300"
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or not 0 <= self.max_retries <= 10
        ):
            errors["max_retries"] = "Max retries must be a whole number from 0 to 10"
        if not _is_number(self.backoff) or not 0 <= float(self.backoff) <= 60:
            errors["backoff"] = "Backoff must be a number of seconds from 0 to 60"
        return errors

    def masked(self) -> dict[str, Any]:
        """The settings for display or logs: keys and client id shown as last 4 at most."""
        return {
            "site_url": _safe_url(self.site_url),
            "company_id": self.company_id,
            "public_key": _mask(self.public_key),
            "private_key": _mask(self.private_key),
            "client_id": _mask(self.client_id),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "backoff": self.backoff,
        }

    def __repr__(self) -> str:  # never leak keys through logs or tracebacks
        fields = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"ConnectWiseSettings({fields})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def same_number(stored: Any, wanted: Decimal) -> bool:
    """True when ConnectWise, which keeps numbers as doubles, already holds ``wanted``.

    ``stored`` is what ConnectWise answered (a Decimal parsed from its JSON text,
    e.g. ``2.1234567890123457``); ``wanted`` is our exact value
    (``2.12345678901234567890``). Both are compared as the double ConnectWise
    would store, so a value it cannot hold more exactly is never sent again.
    """
    try:
        return float(_to_decimal(stored if stored is not None else 0, "number")) == float(wanted)
    except (ValueError, OverflowError):
        return False


# ------------------------------------------------------------------------------ JSON


def _decimal_literal(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot send {value} to ConnectWise")
    # 'f' never uses an exponent, so 1E+3 -> "1000" and 1.50 -> "1.50": both valid JSON.
    return format(value, "f")


def dumps(obj: Any) -> str:
    """JSON text with Decimals as exact number literals and dates as ISO strings."""
    if isinstance(obj, Decimal):
        return _decimal_literal(obj)
    if obj is None or isinstance(obj, bool | int | str):
        return json.dumps(obj)
    if isinstance(obj, float):
        return json.dumps(obj, allow_nan=False)
    if isinstance(obj, datetime):
        return json.dumps(_cw_datetime(obj))
    if isinstance(obj, date):
        return json.dumps(_cw_date(obj))
    if isinstance(obj, Mapping):
        items = (json.dumps(str(k)) + ":" + dumps(v) for k, v in obj.items())
        return "{" + ",".join(items) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def loads(data: bytes | str) -> Any:
    """Parse a ConnectWise JSON answer; non-integer numbers come back as Decimal."""
    return json.loads(data, parse_float=Decimal)


def _cw_date(value: date) -> str:
    # ConnectWise date fields are date-times in UTC; a plain date is midnight UTC.
    return f"{value.isoformat()}T00:00:00Z"


def _cw_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


def _to_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a boolean")
    if isinstance(value, float):
        value = repr(value)  # shortest text that round-trips, not the binary expansion
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return result


def quote_condition(value: str) -> str:
    """A string literal for a ``conditions`` expression.

    ConnectWise wraps strings in double quotes. How it escapes a double quote
    inside a value is not documented clearly; we use a backslash, which is what
    the community clients do. Note that ``%`` and ``_`` stay wildcards in ``like``.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- markers


def addition_marker(external_key: str, level: int | None = None) -> str:
    """The ``[bh:KEY]`` / ``[bh:KEY;level=N]`` text stored in invoiceDescription."""
    if level is None:
        return f"[bh:{external_key}]"
    return f"[bh:{external_key};level={int(level)}]"


def parse_marker(text: str | None) -> tuple[str, int | None] | None:
    """``(key, level)`` from the last Billhive marker in ``text``, or None."""
    matches = list(_MARKER_RE.finditer(text or ""))
    if not matches:
        return None
    key, level = matches[-1].group(1), matches[-1].group(2)
    return key, int(level) if level is not None else None


def _marker_span(text: str, external_key: str) -> tuple[int, int, int | None] | None:
    for match in _MARKER_RE.finditer(text):
        if match.group(1) == external_key:
            level = match.group(2)
            return match.start(), match.end(), int(level) if level is not None else None
    return None


def with_marker(text: str | None, external_key: str, level: int | None) -> str:
    """``text`` carrying exactly this key's marker (updated in place, or appended)."""
    text = text or ""
    marker = addition_marker(external_key, level)
    span = _marker_span(text, external_key)
    if span is not None:
        start, end, _ = span
        text = text[:start] + marker + text[end:]
        if len(text) <= INVOICE_DESCRIPTION_MAX:
            return text
        text = (text[:start] + text[end:]).rstrip()
    room = INVOICE_DESCRIPTION_MAX - len(marker) - 1
    body = text[:room].rstrip()
    return f"{body} {marker}" if body else marker


def _validate_key(external_key: str) -> None:
    if not isinstance(external_key, str) or not _KEY_RE.fullmatch(external_key):
        raise ValueError(
            "external_key must be 1-100 characters without spaces, '[', ']' or ';'"
            f", got {external_key!r}"
        )


# ---------------------------------------------------------------------------- client


def _is_active(addition: Mapping[str, Any], today: date) -> bool:
    """False for an addition whose cancelledDate has passed."""
    cancelled = addition.get("cancelledDate")
    if not cancelled:
        return True
    try:
        day = date.fromisoformat(str(cancelled)[:10])
    except ValueError:
        return True  # unknown format: keep it, a false match is safer than a duplicate
    return day > today


def _product_identifier(addition: Mapping[str, Any]) -> str:
    product = addition.get("product") or {}
    return str(product.get("identifier") or "")


class ConnectWiseClient:
    """ConnectWise Manage REST client.

    ``session`` may be any ``requests.Session`` (tests, proxies); by default the
    client makes one guarded by ``core.outbound`` and closes only a session it
    created itself. ``page_size`` is used for every list call (ConnectWise caps it
    at 1000). ``sleep`` and ``clock`` are injectable for tests; ``retry_after_max``
    is the longest ``Retry-After`` honoured and ``confirm_window`` how long an
    addition whose POST timed out is looked for (seconds).
    """

    def __init__(
        self,
        settings: ConnectWiseSettings,
        session: requests.Session | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        retry_after_max: float = RETRY_AFTER_MAX,
        confirm_window: float = CONFIRM_WINDOW,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.settings = settings
        self._own_session = session is None
        # the site URL is tenant-set: every connection goes through the outbound guard
        self.session = session if session is not None else outbound.guarded_session()
        self.page_size = page_size
        self._sleep = sleep
        self._clock = clock
        self.retry_after_max = float(retry_after_max)
        self.confirm_window = float(confirm_window)
        self._catalog_cache: dict[str, dict] = {}
        #: Duplicate additions this client cancelled: ``{"agreement_id", "addition_id",
        #: "key", "kept_id"}`` each, in order (the sync log reports them).
        self.cancelled: list[dict[str, Any]] = []

    @property
    def _site(self) -> str:
        """The site URL for messages (never with credentials)."""
        return _safe_url(self.settings.base_url)

    # -- lifecycle

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> ConnectWiseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConnectWiseClient({self._site!r}, company={self.settings.company_id!r})"

    # -- public API

    def test_connection(self) -> dict[str, Any]:
        """Check URL, credentials and client id with ``GET system/info``.

        Returns ``{"version", "is_cloud", "server_time_zone", "company_id",
        "api_url", "info"}`` where ``info`` is ConnectWise's raw answer.
        """
        info = self._get_json("system/info")
        if not isinstance(info, dict):
            raise ConnectWiseError(
                "connection",
                "ConnectWise answered system/info with something unexpected: "
                "check that the site URL is the API host",
            )
        return {
            "version": info.get("version"),
            "is_cloud": info.get("isCloud"),
            "server_time_zone": info.get("serverTimeZone"),
            "company_id": self.settings.company_id,
            "api_url": self.settings.api_url,
            "info": info,
        }

    def find_companies(self, name_prefix: str | None = None) -> list[dict]:
        """Companies (not deleted) whose name starts with ``name_prefix``, all pages."""
        conditions = "deletedFlag=false"
        if name_prefix:
            conditions = f"name like {quote_condition(name_prefix + '%')} and {conditions}"
        return self._get_all("company/companies", conditions)

    def get_company(self, company_id: int) -> dict:
        return self._get_json(f"company/companies/{int(company_id)}")

    def catalog_items(self, search: str | None = None) -> list[dict]:
        """Procurement catalog items whose identifier or description contains ``search``."""
        conditions = None
        if search:
            quoted = quote_condition(search)
            conditions = f"(identifier contains {quoted} or description contains {quoted})"
        return self._get_all("procurement/catalog", conditions)

    def catalog_item(self, identifier: str) -> dict:
        """The catalog item with this identifier (ConnectWise compares case-insensitively)."""
        cached = self._catalog_cache.get(identifier)
        if cached is not None:
            return cached
        items = self._get_all("procurement/catalog", f"identifier={quote_condition(identifier)}")
        exact = [i for i in items if str(i.get("identifier")) == identifier]
        found = (exact or items or [None])[0]
        if found is None:
            raise ConnectWiseError(
                "not_found",
                f"ConnectWise has no catalog item {identifier!r} "
                "(Procurement > Product Catalog): check the product mapping",
                404,
            )
        self._catalog_cache[identifier] = found
        return found

    def agreements(self, company_id: int, *, include_cancelled: bool = False) -> list[dict]:
        """Agreements of one company; cancelled ones only when asked."""
        conditions = f"company/id={int(company_id)}"
        if not include_cancelled:
            conditions += " and cancelledFlag=false"
        return self._get_all("finance/agreements", conditions)

    def additions(self, agreement_id: int) -> list[dict]:
        """Every addition of an agreement, cancelled ones included."""
        return self._get_all(f"finance/agreements/{int(agreement_id)}/additions")

    def find_addition(self, agreement_id: int, external_key: str) -> dict | None:
        """The active addition carrying Billhive's ``external_key``, or None.

        We list the agreement's additions and match the marker here rather than
        filtering with ``invoiceDescription contains "[bh:..."``: ConnectWise turns
        ``contains``/``like`` into SQL LIKE, where ``[`` and ``]`` are wildcards.
        An agreement has tens of additions, so this costs one or two pages.
        """
        matches = self._keyed(agreement_id, external_key)
        if len(matches) > 1:
            log.warning(
                "ConnectWise agreement %s has %d additions with Billhive key %s (ids %s); "
                "updating the oldest",
                agreement_id,
                len(matches),
                external_key,
                ", ".join(str(a.get("id")) for a in matches),
            )
        return matches[0] if matches else None

    def _keyed(
        self, agreement_id: int, external_key: str, listed: list[dict] | None = None
    ) -> list[dict]:
        """The active additions carrying ``external_key``, oldest (lowest id) first."""
        _validate_key(external_key)
        today = date.today()
        if listed is None:
            listed = self.additions(agreement_id)
        matches = [
            a
            for a in listed
            if _is_active(a, today)
            and _marker_span(str(a.get("invoiceDescription") or ""), external_key)
        ]
        matches.sort(key=lambda a: int(a.get("id") or 0))
        return matches

    def cancel_duplicates(self, agreement_id: int, keys: Iterable[str]) -> list[dict]:
        """Cancel every active addition beyond the first (oldest) carrying one of ``keys``.

        One list call for the agreement, one PATCH (``cancelledDate`` = today) per
        duplicate. Returns what was cancelled (also appended to :attr:`cancelled`).
        """
        listed = self.additions(agreement_id)
        done: list[dict] = []
        for key in sorted(set(keys)):
            matches = self._keyed(agreement_id, key, listed)
            done += self._cancel_extra(agreement_id, key, matches)
        return done

    def _cancel_extra(self, agreement_id: int, key: str, matches: list[dict]) -> list[dict]:
        done = []
        keeper = matches[0] if matches else None
        for extra in matches[1:]:
            endpoint = f"finance/agreements/{int(agreement_id)}/additions/{int(extra['id'])}"
            ops = [{"op": "replace", "path": "cancelledDate", "value": date.today()}]
            self._request("PATCH", endpoint, body=ops)
            entry = {
                "agreement_id": int(agreement_id),
                "addition_id": int(extra["id"]),
                "key": key,
                "kept_id": int(keeper["id"]) if keeper else None,
            }
            log.warning(
                "cancelled duplicate ConnectWise addition #%s on agreement #%s "
                "(Billhive key %s; #%s kept)",
                entry["addition_id"],
                agreement_id,
                key,
                entry["kept_id"],
            )
            self.cancelled.append(entry)
            done.append(entry)
        return done

    def upsert_addition(
        self,
        agreement_id: int,
        product_identifier: str,
        quantity: Decimal,
        external_key: str,
        level: int | None = None,
        unit_price: Decimal | None = None,
        effective_date: date | None = None,
    ) -> tuple[str, dict]:
        """Make the agreement bill ``quantity`` of the product under ``external_key``.

        Returns ``("created" | "updated" | "unchanged", addition)``. An existing
        addition is found by its ``[bh:KEY]`` marker and only its quantity, unit
        price (when given) and marker level are changed; the effective date is set
        on creation only (``effective_date`` defaults to today). ``unit_price=None``
        leaves pricing to the catalog item. Quantities and prices are compared as
        the doubles ConnectWise keeps (:func:`same_number`). Further active additions
        with the same key are cancelled (see :attr:`cancelled`).

        After a 5xx the client looks for the key and posts again only if it is
        absent; after a 429 it waits what ``Retry-After`` asks (up to
        ``retry_after_max``) and posts again. After a timeout it never posts again:
        it looks for the key with backoff for up to ``confirm_window`` seconds and
        otherwise raises ``ConnectWiseError(kind="uncertain")``.
        """
        _validate_key(external_key)
        quantity = _to_decimal(quantity, "quantity")
        price = _to_decimal(unit_price, "unit_price") if unit_price is not None else None
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise ValueError(f"level must be an integer or None, got {level!r}")
        agreement_id = int(agreement_id)

        matches = self._keyed(agreement_id, external_key)
        if matches:
            self._cancel_extra(agreement_id, external_key, matches)
            return self._reconcile(
                matches[0], product_identifier, quantity, external_key, level, price
            )

        product = self.catalog_item(product_identifier)
        text = str(product.get("customerDescription") or product.get("description") or "")
        body: dict[str, Any] = {
            "product": {"id": product.get("id"), "identifier": product.get("identifier")},
            "quantity": quantity,
            "lessIncluded": Decimal(0),
            "billCustomer": "Billable",
            "effectiveDate": effective_date or date.today(),
            "description": str(product.get("description") or product_identifier),
            "invoiceDescription": with_marker(text, external_key, level),
        }
        if price is not None:
            body["unitPrice"] = price

        endpoint = f"finance/agreements/{agreement_id}/additions"
        attempts = 1 + max(0, int(self.settings.max_retries))
        last_error: ConnectWiseError | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self._delay(attempt, last_error, f"POST {endpoint}"))
            try:
                created = self._json(self._request("POST", endpoint, body=body), endpoint)
            except ConnectWiseError as exc:
                if exc.kind == "timeout":
                    # The answer was lost: ConnectWise may have stored the addition (even a
                    # moment from now). Never post again blindly: look for its key.
                    found = self._await_addition(agreement_id, external_key, exc)
                    _, addition = self._reconcile(
                        found, product_identifier, quantity, external_key, level, price
                    )
                    return "created", addition
                if not exc.retryable:
                    raise
                last_error = exc
                if exc.status is not None and exc.status >= 500:
                    # ConnectWise answered with an error: what it stored is visible now.
                    log.warning(
                        "POST %s failed (%s); checking whether the addition was created anyway",
                        endpoint,
                        exc.message,
                    )
                    try:
                        found = self.find_addition(agreement_id, external_key)
                    except ConnectWiseError as check_exc:
                        raise ConnectWiseError(
                            check_exc.kind if check_exc.retryable else exc.kind,
                            f"{exc.message}; could not check whether ConnectWise created the "
                            f"addition anyway ({check_exc.message}). Nothing is lost: the next "
                            f"sync finds it by its key [bh:{external_key}] before creating it.",
                            exc.status,
                            attempts=attempt + 1,
                        ) from check_exc
                    if found is not None:
                        _, addition = self._reconcile(
                            found, product_identifier, quantity, external_key, level, price
                        )
                        return "created", addition
                # 429 (refused, not stored) or a connection never made: post again
                continue
            if not isinstance(created, dict):
                raise ConnectWiseError(
                    "server", f"ConnectWise answered POST {endpoint} without an addition", 200
                )
            if not _marker_span(str(created.get("invoiceDescription") or ""), external_key):
                raise ConnectWiseError(
                    "server",
                    f"ConnectWise created addition #{created.get('id')} but did not keep the "
                    f"Billhive key in its invoice description; fix or remove it in ConnectWise "
                    f"before the next sync, or it will be created again",
                    200,
                )
            return "created", created
        assert last_error is not None
        raise ConnectWiseError(
            last_error.kind,
            f"{last_error.message} (after {attempts} attempts; ConnectWise shows no addition "
            f"with key [bh:{external_key}], so none was created)",
            last_error.status,
            code=last_error.code,
            details=last_error.details,
            attempts=attempts,
        )

    def _await_addition(
        self, agreement_id: int, external_key: str, error: ConnectWiseError
    ) -> dict:
        """The addition a timed-out POST created, looked for at once and then with
        backoff for at most :attr:`confirm_window` seconds; ``uncertain`` otherwise."""
        deadline = self._clock() + self.confirm_window
        delay = max(float(self.settings.backoff), 0.1)
        looked = 0
        while True:
            looked += 1
            try:
                matches = self._keyed(agreement_id, external_key)
            except ConnectWiseError as exc:
                if not exc.retryable:
                    raise
                log.info("look-up of [bh:%s] failed (%s)", external_key, exc.message)
            else:
                if matches:
                    self._cancel_extra(agreement_id, external_key, matches)
                    return matches[0]
            if self._clock() + delay > deadline:
                break
            self._sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SLEEP)
        raise ConnectWiseError(
            "uncertain",
            f"{error.message}; ConnectWise may still store the addition, and it did not show "
            f"up in {self.confirm_window:g}s ({looked} look-ups). Not posted again: the next "
            f"sync looks for its key [bh:{external_key}] and creates it only if it is absent.",
            error.status,
        )

    # -- upsert helpers

    def _reconcile(
        self,
        existing: dict,
        product_identifier: str,
        quantity: Decimal,
        external_key: str,
        level: int | None,
        price: Decimal | None,
    ) -> tuple[str, dict]:
        addition_id = existing.get("id")
        agreement_id = existing.get("agreementId")
        current_product = _product_identifier(existing)
        if current_product and current_product.lower() != product_identifier.lower():
            raise ConnectWiseError(
                "bad_request",
                f"Addition #{addition_id} on agreement #{agreement_id} carries Billhive key "
                f"{external_key} but bills product {current_product!r}, not "
                f"{product_identifier!r}: cancel that addition in ConnectWise or restore "
                "the product mapping",
            )
        ops: list[dict[str, Any]] = []
        if not same_number(existing.get("quantity"), quantity):
            ops.append({"op": "replace", "path": "quantity", "value": quantity})
        if price is not None and not same_number(existing.get("unitPrice"), price):
            ops.append({"op": "replace", "path": "unitPrice", "value": price})
        text = str(existing.get("invoiceDescription") or "")
        span = _marker_span(text, external_key)
        if span is None or span[2] != level:
            new_text = with_marker(text, external_key, level)
            ops.append({"op": "replace", "path": "invoiceDescription", "value": new_text})
        if not ops:
            return "unchanged", existing
        if agreement_id is None:
            raise ConnectWiseError(
                "server", f"ConnectWise addition #{addition_id} has no agreementId", 200
            )
        endpoint = f"finance/agreements/{int(agreement_id)}/additions/{int(addition_id)}"
        updated = self._json(self._request("PATCH", endpoint, body=ops), endpoint)
        return "updated", updated if isinstance(updated, dict) else existing

    # -- HTTP plumbing

    def _backoff(self, attempt: int) -> float:
        delay = float(self.settings.backoff) * (2 ** (attempt - 1))
        return min(delay, MAX_RETRY_SLEEP)

    def _delay(self, attempt: int, error: ConnectWiseError | None, what: str) -> float:
        """Seconds to wait before retry ``attempt``: what ``Retry-After`` asked, else our
        backoff. A wait beyond :attr:`retry_after_max` is not shortened: ``error`` is
        raised instead (the next sync tries again)."""
        retry_after = error.retry_after if error is not None else None
        if retry_after is None:
            return self._backoff(attempt)
        if retry_after > self.retry_after_max:
            assert error is not None
            error.message = (
                f"{error.message} ConnectWise asked to wait {retry_after:g}s before {what}, "
                f"more than the {self.retry_after_max:g}s this instance waits; the next sync "
                "tries again"
            )
            error.args = (error.message,)
            error.attempts = attempt
            raise error
        return retry_after

    def _get_json(self, endpoint: str, params: dict | None = None) -> Any:
        return self._json(self._request("GET", endpoint, params=params), endpoint)

    def _get_all(self, endpoint: str, conditions: str | None = None) -> list[dict]:
        results: list[dict] = []
        for page in range(1, MAX_PAGES + 1):
            params: dict[str, Any] = {"page": page, "pageSize": self.page_size}
            if conditions:
                params["conditions"] = conditions
            resp = self._request("GET", endpoint, params=params)
            items = self._json(resp, endpoint)
            if not isinstance(items, list):
                raise ConnectWiseError(
                    "server", f"ConnectWise answered {endpoint} without a list", resp.status_code
                )
            results.extend(items)
            link = resp.headers.get("Link")
            if link is not None:
                # ConnectWise's navigable paging: a rel="next" link while pages remain.
                if 'rel="next"' not in link:
                    break
            elif len(items) < self.page_size:
                break
            if not items:
                break
        return results

    def _json(self, resp: requests.Response, endpoint: str) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return loads(resp.content)
        except ValueError:
            # not ConnectWise: say nothing of what answered (see core.outbound)
            log.warning("%s answered %s with something that is not JSON", self._site, endpoint)
            raise ConnectWiseError("connection", outbound.UNREACHABLE, resp.status_code) from None

    def _request(
        self,
        method: str,
        endpoint: str,
        *,
        params: dict | None = None,
        body: Any = None,
    ) -> requests.Response:
        """One ConnectWise call, retried when that is safe.

        GET/PATCH/PUT/DELETE are retried on timeouts, connection errors, 429 and
        5xx, waiting what ``Retry-After`` asks (up to :attr:`retry_after_max`);
        POST is tried once (see :meth:`upsert_addition`). A site the outbound guard
        refuses is never retried. Every way of not reaching the site (refused,
        closed or silent port, DNS, TLS, a redirect, an answer that is not JSON)
        gives the one message of ``core.outbound``, so that the message tells
        nothing about the ports of the host.
        """
        method = method.upper()
        endpoint = endpoint.lstrip("/")
        url = self.settings.api_url + endpoint
        headers = {"Accept": ACCEPT}
        if self.settings.client_id:
            headers["clientId"] = self.settings.client_id
        data = None
        if body is not None:
            data = dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        retry = method in ("GET", "HEAD", "PUT", "PATCH", "DELETE")
        attempts = 1 + max(0, int(self.settings.max_retries)) if retry else 1
        what = f"{method} {endpoint}"
        timeout = float(self.settings.timeout)

        last_error: ConnectWiseError | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self._delay(attempt, last_error, what)
                log.info(
                    "retrying %s in %.2fs (%s)", what, delay, last_error and last_error.message
                )
                self._sleep(delay)
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    auth=(self.settings.username, self.settings.private_key),
                    timeout=timeout,
                    allow_redirects=False,
                )
            except outbound.OutboundBlocked:
                log.warning("outbound guard refused %s for %s", what, self._site)
                raise ConnectWiseError("connection", outbound.UNREACHABLE) from None
            except requests.exceptions.RequestException as exc:
                log.info("%s at %s: %s", what, self._site, type(exc).__name__)
                if _never_sent(exc):
                    # never reached the server: nothing was sent, any method may be retried
                    last_error = ConnectWiseError("connection", outbound.UNREACHABLE)
                    continue
                if isinstance(exc, requests.exceptions.ConnectionError | requests.Timeout):
                    # sent, answer lost (read timeout, reset): "timeout" tells
                    # upsert_addition that a POST may have been stored
                    last_error = ConnectWiseError("timeout", outbound.UNREACHABLE)
                    continue
                raise ConnectWiseError("connection", outbound.UNREACHABLE) from None

            status = resp.status_code
            if status == 429 or status >= 500:
                last_error = self._http_error(resp, what)
                last_error.retry_after = _retry_after(resp)
                continue
            if 300 <= status < 400:
                log.warning("%s at %s redirected (%s)", what, self._site, status)
                raise ConnectWiseError("connection", outbound.UNREACHABLE, status)
            if status >= 400:
                raise self._http_error(resp, what)
            return resp

        assert last_error is not None
        last_error.attempts = attempts
        if attempts > 1 and last_error.status is not None:
            last_error.message = f"{last_error.message} (after {attempts} attempts)"
            last_error.args = (last_error.message,)
        raise last_error

    def _http_error(self, resp: requests.Response, what: str) -> ConnectWiseError:
        status = resp.status_code
        code = None
        cw_message = ""
        details: list = []
        try:
            payload = loads(resp.content) if resp.content else None
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            code = payload.get("code")
            cw_message = str(payload.get("message") or "")
            raw = payload.get("errors")
            details = raw if isinstance(raw, list) else []
        detail_text = "; ".join(
            str(d.get("message")) + (f" ({d['field']})" if d.get("field") else "")
            for d in details
            if isinstance(d, dict) and d.get("message")
        )
        said = ": ".join(x for x in (cw_message, detail_text) if x)
        suffix = f" ConnectWise said: {said}" if said else ""

        def error(kind: str, message: str) -> ConnectWiseError:
            exc = ConnectWiseError(kind, message, status, code=code, details=details)
            exc.plain = message.replace(suffix, "").rstrip() if suffix else message
            return exc

        shaped = isinstance(payload, dict) and ("code" in payload or "message" in payload)
        if not shaped and status not in (401, 403, 429):
            # Not ConnectWise's error shape: whatever answered is not echoed, and the
            # message is the one for a site that cannot be reached (core.outbound).
            log.warning("%s answered %s with %s and no ConnectWise error", self._site, what, status)
            kind = "server" if status >= 500 else "connection"
            return error(kind, outbound.UNREACHABLE)

        mentions_client_id = "clientid" in said.replace(" ", "").lower()
        if status == 401 and mentions_client_id:
            # Some Manage versions may answer a bad clientId with 401; say so plainly.
            return error(
                "auth",
                "ConnectWise refused the request (401): the clientId header is missing or "
                f"not valid, check the Client ID setting.{suffix}",
            )
        if status == 401:
            return error(
                "auth",
                "ConnectWise refused the credentials (401): check company id, public and "
                "private key",
            )
        if status == 403:
            return error(
                "auth",
                f"ConnectWise denied {what} (403): the API member's security role lacks "
                f"this permission.{suffix}",
            )
        if status == 404:
            return error("not_found", f"ConnectWise found nothing at {what} (404).{suffix}")
        if status == 429:
            return error("server", f"ConnectWise is throttling requests (429) on {what}.{suffix}")
        if status >= 500:
            return error("server", f"ConnectWise failed on {what} ({status}).{suffix}")
        if mentions_client_id:
            return error(
                "bad_request",
                f"ConnectWise rejected {what} ({status}): the clientId header is missing or "
                f"not valid, check the Client ID setting.{suffix}",
            )
        return error("bad_request", f"ConnectWise rejected {what} ({status}).{suffix}")


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = (resp.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_sent(exc: BaseException) -> bool:
    """True when a requests error happened before the request reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return True  # refused, unreachable, DNS (NameResolutionError is a subclass)
        reason = getattr(seen, "reason", None)
        if reason is None and seen.args and isinstance(seen.args[0], BaseException):
            reason = seen.args[0]
        seen = reason or seen.__cause__ or seen.__context__
    return False
