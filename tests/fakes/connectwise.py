"""A fake ConnectWise Manage REST server (API v3.0) for tests.

``FakeConnectWise`` serves ``/v4_6_release/apis/3.0/...`` from a
``ThreadingHTTPServer`` on 127.0.0.1 (port 0) in a daemon thread, with in-memory
companies, catalog items, agreements and agreement additions. It behaves like the
real service where Billhive depends on it:

* Basic auth ``{companyId}+{publicKey}`` / ``{privateKey}`` → 401 otherwise;
  a ``clientId`` header is required → 400 otherwise. Error bodies have
  ConnectWise's shape ``{"code": ..., "message": ..., "errors": [...]}``.
* Lists take ``page`` (1-based), ``pageSize`` (default 25, capped at 1000), a
  ``conditions`` filter and a simple ``orderBy``; a ``Link`` header carries
  ``rel="next"``/``"prev"``/``"first"``/``"last"`` like ConnectWise's navigable paging.
* ``conditions`` understands ``= != < <= > >=``, ``like`` (``%``/``_``),
  ``contains``, ``not like``, ``not contains``, ``in (...)``, ``and``/``or`` and
  parentheses; string comparison ignores case (SQL Server's default collation).
  Values: ``"strings"`` (backslash escapes), numbers, ``true``/``false``/``null``
  and ``[2024-01-01T00:00:00Z]`` dates.
* Additions: GET list/one, POST, PATCH (JSON-patch list, ``replace``/``add``;
  paths with or without a leading ``/``), PUT and DELETE.
* JSON numbers are read as Decimal and written back from their exact text.

Like the real service, numbers of an addition (``quantity``, ``unitPrice``...)
are stored as doubles: ``2.12345678901234567890`` is kept and answered as
``2.1234567890123457``.

Fault injection: :meth:`FakeConnectWise.fail_next` answers matching requests
with an error *without* applying them (``retry_after=`` adds a ``Retry-After``
header, e.g. for 429 on any method); :meth:`FakeConnectWise.delay_next`
applies a matching request first and only then waits before answering, which
is the "the server committed, the client timed out" case;
:meth:`FakeConnectWise.save_late` holds a matching request and applies it only
later (after ``seconds``, or when the test calls ``release()``), which is the
"ConnectWise saved it a moment after the client gave up" case. Every request is
recorded in :attr:`FakeConnectWise.requests_log`.

Not modelled (unknown or not needed): exact ConnectWise error texts, custom
fields, ``childConditions``, ``fields``, forward-only paging with ``pageId``,
agreement/catalog writes, and ConnectWise's side effects on invoices.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_PREFIX = "/v4_6_release/apis/3.0/"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
BILL_CUSTOMER = ("Billable", "DoNotBill", "NoCharge")
ADDITION_NUMBERS = (
    "quantity",
    "lessIncluded",
    "unitPrice",
    "unitCost",
    "billedQuantity",
    "sequenceNumber",
)
ADDITION_WRITABLE = frozenset(
    {
        "product",
        "quantity",
        "lessIncluded",
        "unitPrice",
        "unitCost",
        "billCustomer",
        "effectiveDate",
        "cancelledDate",
        "taxableFlag",
        "serialNumber",
        "invoiceDescription",
        "purchaseItemFlag",
        "specialOrderFlag",
        "description",
        "billedQuantity",
        "uom",
        "sequenceNumber",
        "prorateCurrentPeriodFlag",
    }
)
MAX_LENGTHS = {"invoiceDescription": 6000, "serialNumber": 50}


# ----------------------------------------------------------------------------- JSON


def _dumps(obj: Any) -> str:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if obj is None or isinstance(obj, bool | int | str | float):
        return json.dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + _dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _double(value: Any) -> Decimal:
    """``value`` as ConnectWise keeps it: a double, answered with its shortest text."""
    return Decimal(repr(float(value)))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


class ApiError(Exception):
    """An error answer in ConnectWise's shape."""

    def __init__(self, status: int, code: str, message: str, errors: list | None = None):
        super().__init__(message)
        self.status = status
        self.payload: dict[str, Any] = {"code": code, "message": message}
        if errors:
            self.payload["errors"] = errors


def _invalid(resource: str, field_name: str, code: str, message: str) -> ApiError:
    return ApiError(
        400,
        "InvalidObject",
        f"{resource} object is invalid",
        [{"code": code, "message": message, "resource": resource, "field": field_name}],
    )


# ----------------------------------------------------------------------- conditions

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<date>\[[^\]]*\])
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_/.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "like", "contains", "in", "true", "false", "null"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ApiError(400, "InvalidObject", f"Invalid conditions near {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _resolve(item: dict, path: str) -> Any:
    value: Any = item
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        # ConnectWise field names are case-insensitive in conditions.
        matched = next((k for k in value if k.lower() == part.lower()), None)
        if matched is None:
            return None
        value = value[matched]
    return value


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if expected is None or actual is None:
        if op == "=":
            return actual is None and expected is None
        if op in ("!=", "<>"):
            return not (actual is None and expected is None)
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        if op == "=":
            return actual == expected
        if op in ("!=", "<>"):
            return actual != expected
        return False
    if isinstance(expected, Decimal):
        try:
            left: Any = Decimal(str(actual))
        except InvalidOperation:
            return False
        right: Any = expected
    else:
        left, right = str(actual).casefold(), str(expected).casefold()
    return {
        "=": left == right,
        "!=": left != right,
        "<>": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


class _ConditionParser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self):
        if not self.tokens:
            return lambda item: True
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise self._error()
        return predicate

    def _error(self) -> ApiError:
        rest = " ".join(v for _, v in self.tokens[self.pos :]) or "end of conditions"
        return ApiError(400, "InvalidObject", f"Invalid conditions: unexpected {rest!r}")

    def _peek_word(self, *words: str) -> bool:
        if self.pos < len(self.tokens):
            kind, value = self.tokens[self.pos]
            return kind == "word" and value.lower() in words
        return False

    def _take(self, kind: str) -> str:
        if self.pos >= len(self.tokens) or self.tokens[self.pos][0] != kind:
            raise self._error()
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def _or(self):
        parts = [self._and()]
        while self._peek_word("or"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def _and(self):
        parts = [self._atom()]
        while self._peek_word("and"):
            self.pos += 1
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def _value(self) -> Any:
        if self.pos >= len(self.tokens):
            raise self._error()
        kind, raw = self.tokens[self.pos]
        self.pos += 1
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", raw[1:-1])
        if kind == "number":
            return Decimal(raw)
        if kind == "date":
            return raw[1:-1]
        if kind == "word" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if kind == "word" and raw.lower() == "null":
            return None
        self.pos -= 1
        raise self._error()

    def _atom(self):
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "lparen":
            self.pos += 1
            inner = self._or()
            self._take("rparen")
            return inner
        path = self._take("word")
        if path.lower() in _KEYWORDS:
            self.pos -= 1
            raise self._error()
        negate = False
        if self._peek_word("not"):
            self.pos += 1
            negate = True
        if self._peek_word("like"):
            self.pos += 1
            regex = _like_regex(str(self._value()))

            def test(item: dict) -> bool:
                value = _resolve(item, path)
                return value is not None and bool(regex.fullmatch(str(value)))

        elif self._peek_word("contains"):
            self.pos += 1
            needle = str(self._value()).casefold()

            def test(item: dict) -> bool:
                value = _resolve(item, path)
                return value is not None and needle in str(value).casefold()

        elif self._peek_word("in"):
            self.pos += 1
            self._take("lparen")
            options = [self._value()]
            while self.pos < len(self.tokens) and self.tokens[self.pos][0] == "comma":
                self.pos += 1
                options.append(self._value())
            self._take("rparen")

            def test(item: dict) -> bool:
                value = _resolve(item, path)
                return any(_compare(value, "=", option) for option in options)

        elif not negate:
            op = self._take("op")
            expected = self._value()

            def test(item: dict) -> bool:
                return _compare(_resolve(item, path), op, expected)

        else:
            raise self._error()
        if negate:
            return lambda item: not test(item)
        return test


def filter_by_conditions(items: list[dict], conditions: str | None) -> list[dict]:
    """The items matching a ConnectWise ``conditions`` string (see module doc)."""
    if not conditions:
        return list(items)
    predicate = _ConditionParser(conditions).parse()
    return [item for item in items if predicate(item)]


# ------------------------------------------------------------------------ the fake


@dataclass
class LoggedRequest:
    """One request the fake received."""

    method: str
    path: str  # URL path without the query string
    endpoint: str  # path below /v4_6_release/apis/3.0/, e.g. "company/companies"
    query: dict[str, str]
    headers: dict[str, str]
    raw_body: str
    body: Any  # parsed JSON (Decimals for non-integers), or None
    auth_user: str | None
    status: int | None = None
    fault: str | None = None  # "fail", "delay" or "late" when a fault was injected
    delay: float = 0.0


@dataclass
class _Fault:
    kind: str
    substring: str
    times: int
    method: str | None
    status: int = 500
    seconds: float = 0.0
    payload: dict | None = None
    skip: int = 0
    retry_after: str | None = None
    held: LateSave | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and self.substring in path
            and (self.method is None or self.method == method)
        )


class LateSave:
    """A request held by :meth:`FakeConnectWise.save_late`.

    The request is applied when :meth:`release` is called (or after the fault's
    ``seconds``); :attr:`saved` is set once it is stored, :attr:`arrived` once the
    request reached the fake.
    """

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.saved = threading.Event()
        self._go = threading.Event()

    def release(self, wait: float = 5.0) -> bool:
        """Let the held request be applied; True once it is stored (waits up to ``wait``)."""
        self._go.set()
        return self.saved.wait(wait)


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str


def _route(method: str, pattern: str, handler: str) -> _Route:
    return _Route(method, re.compile(pattern + r"/?", re.IGNORECASE), handler)


ROUTES = [
    _route("GET", r"system/info", "_system_info"),
    _route("GET", r"system/myAccount", "_my_account"),
    _route("GET", r"company/companies/count", "_count_companies"),
    _route("GET", r"company/companies", "_list_companies"),
    _route("GET", r"company/companies/(\d+)", "_get_company"),
    _route("GET", r"procurement/catalog/count", "_count_catalog"),
    _route("GET", r"procurement/catalog", "_list_catalog"),
    _route("GET", r"procurement/catalog/(\d+)", "_get_catalog_item"),
    _route("GET", r"finance/agreements/count", "_count_agreements"),
    _route("GET", r"finance/agreements", "_list_agreements"),
    _route("GET", r"finance/agreements/(\d+)", "_get_agreement"),
    _route("GET", r"finance/agreements/(\d+)/additions/count", "_count_additions"),
    _route("GET", r"finance/agreements/(\d+)/additions", "_list_additions"),
    _route("POST", r"finance/agreements/(\d+)/additions", "_create_addition"),
    _route("GET", r"finance/agreements/(\d+)/additions/(\d+)", "_get_addition"),
    _route("PATCH", r"finance/agreements/(\d+)/additions/(\d+)", "_patch_addition"),
    _route("PUT", r"finance/agreements/(\d+)/additions/(\d+)", "_put_addition"),
    _route("DELETE", r"finance/agreements/(\d+)/additions/(\d+)", "_delete_addition"),
]


@dataclass
class _Response:
    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeConnectWise:
    """A ConnectWise Manage site in memory, served over real HTTP on 127.0.0.1.

    Use as a context manager (or ``start()``/``stop()``); ``url`` is the site URL
    (``http://127.0.0.1:PORT``) to put in ``ConnectWiseSettings.site_url``.
    """

    def __init__(
        self,
        company_id: str = "billhive",
        public_key: str = "PUBkey0123456789",
        private_key: str = "PRIVkey9876543210xyz",
        client_id: str = "3f2b8c1e-7a4d-4e5f-9b6a-0c1d2e3f4a5b",
        *,
        version: str = "v2024.1.99999",
        member: str = "billhive-api",
    ) -> None:
        self.company_id = company_id
        self.public_key = public_key
        self.private_key = private_key
        self.client_id = client_id
        self.version = version
        self.member = member

        self.companies: dict[int, dict] = {}
        self.catalog: dict[int, dict] = {}
        self.agreements: dict[int, dict] = {}
        self.additions: dict[int, dict] = {}
        self.requests_log: list[LoggedRequest] = []

        self._ids = {"company": 100, "catalog": 500, "agreement": 900, "addition": 5000}
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeConnectWise:
        if self._server is not None:
            return self
        self._stopping.clear()
        fake = self

        class Handler(_Handler):
            owner = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="FakeConnectWise",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes handlers sleeping in an injected delay."""
        self._stopping.set()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FakeConnectWise:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeConnectWise is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The site URL; the API lives at ``{url}/v4_6_release/apis/3.0/``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    def settings(self, **overrides: Any):
        """``ConnectWiseSettings`` pointing at this fake with its credentials.

        Defaults suit tests (timeout 2 s, 2 retries, 10 ms backoff); pass any field
        to override it.
        """
        from plugins.psa_mapping.service.connectwise import ConnectWiseSettings

        values: dict[str, Any] = {
            "site_url": self.url,
            "company_id": self.company_id,
            "public_key": self.public_key,
            "private_key": self.private_key,
            "client_id": self.client_id,
            "timeout": 2.0,
            "max_retries": 2,
            "backoff": 0.01,
        }
        values.update(overrides)
        return ConnectWiseSettings(**values)

    # ------------------------------------------------------------------- seeding

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _info(self) -> dict:
        return {"lastUpdated": _now(), "updatedBy": self.member}

    def add_company(self, name: str, identifier: str | None = None, **extra: Any) -> dict:
        """Add a company; returns the live record (``id``, ``identifier``, ``name``...)."""
        with self._lock:
            cid = self._next_id("company")
            record = {
                "id": cid,
                "identifier": identifier or re.sub(r"\W+", "", name)[:25] or f"C{cid}",
                "name": name,
                "status": {"id": 1, "name": "Active"},
                "types": [{"id": 1, "name": "Client"}],
                "deletedFlag": False,
                "_info": self._info(),
            }
            record.update(extra)
            self.companies[cid] = record
            return record

    def add_catalog_item(
        self,
        identifier: str,
        description: str,
        price: Decimal | int | str = 0,
        cost: Decimal | int | str = 0,
        **extra: Any,
    ) -> dict:
        """Add a procurement catalog item ("Product/Service"); returns the live record."""
        with self._lock:
            iid = self._next_id("catalog")
            record = {
                "id": iid,
                "identifier": identifier,
                "description": description,
                "customerDescription": description,
                "inactiveFlag": False,
                "productClass": "Service",
                "type": {"id": 1, "name": "Service"},
                "subcategory": {"id": 1, "name": "Cloud"},
                "unitOfMeasure": {"id": 1, "name": "Each"},
                "price": Decimal(str(price)),
                "cost": Decimal(str(cost)),
                "taxableFlag": False,
                "_info": self._info(),
            }
            record.update(extra)
            self.catalog[iid] = record
            return record

    def add_agreement(self, company_id: int, name: str, **extra: Any) -> dict:
        """Add an agreement for a company; returns the live record."""
        with self._lock:
            company = self.companies[company_id]
            aid = self._next_id("agreement")
            record = {
                "id": aid,
                "name": name,
                "type": {"id": 1, "name": "Managed Services"},
                "company": {
                    "id": company["id"],
                    "identifier": company["identifier"],
                    "name": company["name"],
                },
                "startDate": "2024-01-01T00:00:00Z",
                "endDate": None,
                "noEndingDateFlag": True,
                "agreementStatus": "Active",
                "cancelledFlag": False,
                "billingCycle": {"id": 1, "name": "Monthly"},
                "_info": self._info(),
            }
            record.update(extra)
            self.agreements[aid] = record
            return record

    def add_addition(
        self, agreement_id: int, product_identifier: str, quantity: Any = 1, **extra: Any
    ) -> dict:
        """Add an addition directly (as if someone created it in ConnectWise)."""
        body = {
            "product": {"identifier": product_identifier},
            "quantity": Decimal(str(quantity)),
            "billCustomer": "Billable",
        }
        body.update(extra)
        with self._lock:
            return self._new_addition(agreement_id, body)

    def additions_of(self, agreement_id: int) -> list[dict]:
        """Copies of an agreement's additions, by id."""
        with self._lock:
            return copy.deepcopy(
                sorted(
                    (a for a in self.additions.values() if a["agreementId"] == agreement_id),
                    key=lambda a: a["id"],
                )
            )

    # --------------------------------------------------------------- inspection

    def requests_to(self, substring: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose path contains ``substring`` (and of ``method``)."""
        with self._lock:
            return [
                r
                for r in self.requests_log
                if substring in r.path and (method is None or r.method == method.upper())
            ]

    def clear_log(self) -> None:
        with self._lock:
            self.requests_log.clear()

    # ----------------------------------------------------------- fault injection

    def fail_next(
        self,
        path_substring: str,
        status: int = 500,
        times: int = 1,
        *,
        method: str | None = None,
        payload: dict | None = None,
        skip: int = 0,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (not applied).

        ``path_substring`` is matched against the URL path; ``method`` narrows it to
        one HTTP method; ``skip`` lets that many matching requests through first;
        ``payload`` replaces the ConnectWise-style error body; ``retry_after`` sends a
        ``Retry-After`` header (seconds, or an HTTP date as text).
        """
        default = {
            401: ("Unauthorized", "Invalid public/private key"),
            429: ("TooManyRequests", "Too many requests, slow down"),
        }.get(status, ("UnexpectedError", "An unexpected error has occurred (injected fault)"))
        with self._lock:
            self._faults.append(
                _Fault(
                    "fail",
                    path_substring,
                    times,
                    method.upper() if method else None,
                    status=status,
                    payload=payload or {"code": default[0], "message": default[1]},
                    skip=skip,
                    retry_after=None if retry_after is None else str(retry_after),
                )
            )

    def delay_next(
        self,
        path_substring: str,
        seconds: float,
        times: int = 1,
        *,
        method: str | None = None,
        skip: int = 0,
    ) -> None:
        """Apply the next ``times`` matching requests, then wait ``seconds`` to answer.

        The change is made before the wait, so a client that times out has still
        changed the data (ConnectWise committed, the answer got lost). ``method``
        and ``skip`` work as in :meth:`fail_next`.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    "delay",
                    path_substring,
                    times,
                    method.upper() if method else None,
                    seconds=seconds,
                    skip=skip,
                )
            )

    def save_late(
        self,
        path_substring: str,
        *,
        method: str | None = "POST",
        seconds: float | None = None,
    ) -> LateSave:
        """Hold the next matching request and apply it only later.

        The request is stored when the returned handle's ``release()`` is called, or
        after ``seconds`` when given, and only then answered: a client whose timeout
        is shorter has given up by then, yet the record exists (the real
        ConnectWise under load does this). Without ``seconds`` and without a
        release, the request is dropped unapplied when the fake stops.
        """
        held = LateSave()
        with self._lock:
            self._faults.append(
                _Fault(
                    "late",
                    path_substring,
                    1,
                    method.upper() if method else None,
                    seconds=seconds or 0.0,
                    held=held,
                )
            )
        return held

    def _take_fault(self, kind: str, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ serving

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(req.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length).decode("utf-8", "replace") if length else ""
        auth_user, auth_password = _basic_auth(req.headers.get("Authorization"))
        entry = LoggedRequest(
            method=method,
            path=path,
            endpoint=path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path,
            query=query,
            headers={k: v for k, v in req.headers.items()},
            raw_body=raw,
            body=None,
            auth_user=auth_user,
        )
        with self._lock:
            self.requests_log.append(entry)

        delay = self._take_fault("delay", method, path)
        late = self._take_fault("late", method, path)
        if late is not None and late.held is not None:
            entry.fault = "late"
            late.held.arrived.set()
            waited, step = 0.0, 0.02
            while not late.held._go.wait(step):
                waited += step
                if self._stopping.is_set():
                    return  # stopped while holding: never applied, nothing answered
                if late.seconds > 0 and waited >= late.seconds:
                    break
        extra_headers: dict[str, str] = {}
        try:
            failure = self._take_fault("fail", method, path)
            if failure is not None:
                entry.fault = "fail"
                if failure.retry_after is not None:
                    extra_headers["Retry-After"] = failure.retry_after
                raise _PayloadError(failure.status, failure.payload or {})
            if raw:
                try:
                    entry.body = json.loads(raw, parse_float=Decimal)
                except ValueError:
                    raise ApiError(
                        400, "InvalidObject", "The request body is not valid JSON"
                    ) from None
            self._check_auth(req, auth_user, auth_password)
            response = self._dispatch(method, entry, query)
        except ApiError as exc:
            response = _Response(exc.status, exc.payload)
        except Exception as exc:  # a bug in the fake: answer 500 like a server would
            response = _Response(500, {"code": "UnexpectedError", "message": repr(exc)})
        response.headers.update(extra_headers)
        if late is not None and late.held is not None:
            late.held.saved.set()

        entry.status = response.status
        if delay is not None:
            entry.fault = entry.fault or "delay"
            entry.delay = delay.seconds
            self._stopping.wait(delay.seconds)
        _write(req, response)

    def _check_auth(self, req: BaseHTTPRequestHandler, user: str | None, pw: str | None) -> None:
        company, _, public = (user or "").partition("+")
        if (
            user is None
            or company.lower() != self.company_id.lower()
            or public != self.public_key
            or pw != self.private_key
        ):
            # Real ConnectWise's wording differs between versions; the status is what counts.
            raise ApiError(401, "Unauthorized", "Invalid public/private key or company id")
        client_id = req.headers.get("clientId")
        if not client_id:
            # Unsure of the exact status ConnectWise uses for a missing clientId (400 is
            # what we model); the message names the header either way.
            raise ApiError(400, "InvalidClientId", "A clientId header is required")
        if client_id != self.client_id:
            raise ApiError(400, "InvalidClientId", f"clientId {client_id!r} is not valid")

    def _dispatch(self, method: str, entry: LoggedRequest, query: dict[str, str]) -> _Response:
        if not entry.path.startswith(API_PREFIX):
            raise ApiError(404, "NotFound", f"{entry.path} is not a ConnectWise API path")
        endpoint = entry.endpoint.rstrip("/")
        allowed = []
        for route in ROUTES:
            match = route.pattern.fullmatch(endpoint)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            args = [int(g) for g in match.groups()]
            with self._lock:
                return getattr(self, route.handler)(*args, query=query, body=entry.body)
        if allowed:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {endpoint}")
        raise ApiError(404, "NotFound", f"No resource at {endpoint}")

    # ------------------------------------------------------------------ lists

    def _page(self, items: list[dict], query: dict[str, str], endpoint: str) -> _Response:
        items = filter_by_conditions(items, query.get("conditions"))
        order = query.get("orderBy")
        if order:
            field_name, _, direction = order.strip().partition(" ")
            items.sort(
                key=lambda i: (
                    _resolve(i, field_name) is None,
                    str(_resolve(i, field_name) or "").casefold(),
                ),
                reverse=direction.strip().lower() == "desc",
            )
        else:
            items.sort(key=lambda i: i["id"])
        try:
            page = int(query.get("page") or 1)
            size = int(query.get("pageSize") or DEFAULT_PAGE_SIZE)
        except ValueError:
            raise ApiError(400, "InvalidObject", "page and pageSize must be integers") from None
        page, size = max(page, 1), min(max(size, 1), MAX_PAGE_SIZE)
        last = max(1, -(-len(items) // size))
        chunk = items[(page - 1) * size : page * size]
        headers = {}
        if last > 1:

            def link(n: int, rel: str) -> str:
                params = {k: v for k, v in query.items() if k not in ("page", "pageSize")}
                params.update({"pageSize": size, "page": n})
                return f'<{self.api_url}{endpoint}?{urlencode(params)}>; rel="{rel}"'

            links = []
            if page < last:
                links += [link(page + 1, "next"), link(last, "last")]
            if page > 1:
                links += [link(page - 1, "prev"), link(1, "first")]
            headers["Link"] = ", ".join(links)
        return _Response(200, copy.deepcopy(chunk), headers)

    def _count(self, items: list[dict], query: dict[str, str]) -> _Response:
        return _Response(200, {"count": len(filter_by_conditions(items, query.get("conditions")))})

    # ------------------------------------------------------------------ system

    def _system_info(self, *, query, body) -> _Response:
        return _Response(
            200,
            {
                "version": self.version,
                "isCloud": False,
                "serverTimeZone": "Eastern Standard Time",
                "licenseBits": [],
            },
        )

    def _my_account(self, *, query, body) -> _Response:
        return _Response(
            200, {"id": 1, "identifier": self.member, "firstName": "Billhive", "lastName": "API"}
        )

    # -------------------------------------------------------------- companies

    def _list_companies(self, *, query, body) -> _Response:
        return self._page(list(self.companies.values()), query, "company/companies")

    def _count_companies(self, *, query, body) -> _Response:
        return self._count(list(self.companies.values()), query)

    def _get_company(self, company_id: int, *, query, body) -> _Response:
        if company_id not in self.companies:
            raise ApiError(404, "NotFound", f"Company ID {company_id} not found")
        return _Response(200, copy.deepcopy(self.companies[company_id]))

    # ---------------------------------------------------------------- catalog

    def _list_catalog(self, *, query, body) -> _Response:
        return self._page(list(self.catalog.values()), query, "procurement/catalog")

    def _count_catalog(self, *, query, body) -> _Response:
        return self._count(list(self.catalog.values()), query)

    def _get_catalog_item(self, item_id: int, *, query, body) -> _Response:
        if item_id not in self.catalog:
            raise ApiError(404, "NotFound", f"Catalog Item ID {item_id} not found")
        return _Response(200, copy.deepcopy(self.catalog[item_id]))

    # ------------------------------------------------------------- agreements

    def _list_agreements(self, *, query, body) -> _Response:
        return self._page(list(self.agreements.values()), query, "finance/agreements")

    def _count_agreements(self, *, query, body) -> _Response:
        return self._count(list(self.agreements.values()), query)

    def _get_agreement(self, agreement_id: int, *, query, body) -> _Response:
        return _Response(200, copy.deepcopy(self._agreement(agreement_id)))

    def _agreement(self, agreement_id: int) -> dict:
        if agreement_id not in self.agreements:
            raise ApiError(404, "NotFound", f"Agreement ID {agreement_id} not found")
        return self.agreements[agreement_id]

    # -------------------------------------------------------------- additions

    def _additions_list(self, agreement_id: int) -> list[dict]:
        self._agreement(agreement_id)
        return [a for a in self.additions.values() if a["agreementId"] == agreement_id]

    def _list_additions(self, agreement_id: int, *, query, body) -> _Response:
        endpoint = f"finance/agreements/{agreement_id}/additions"
        return self._page(self._additions_list(agreement_id), query, endpoint)

    def _count_additions(self, agreement_id: int, *, query, body) -> _Response:
        return self._count(self._additions_list(agreement_id), query)

    def _addition(self, agreement_id: int, addition_id: int) -> dict:
        self._agreement(agreement_id)
        addition = self.additions.get(addition_id)
        if addition is None or addition["agreementId"] != agreement_id:
            raise ApiError(404, "NotFound", f"Addition ID {addition_id} not found")
        return addition

    def _get_addition(self, agreement_id: int, addition_id: int, *, query, body) -> _Response:
        return _Response(200, copy.deepcopy(self._addition(agreement_id, addition_id)))

    def _create_addition(self, agreement_id: int, *, query, body) -> _Response:
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidObject", "addition object is invalid: expected an object")
        record = self._new_addition(agreement_id, body)
        return _Response(201, copy.deepcopy(record))

    def _new_addition(self, agreement_id: int, body: dict) -> dict:
        agreement = self._agreement(agreement_id)
        unknown = set(body) - ADDITION_WRITABLE - {"id", "agreementId", "_info"}
        if unknown:
            name = sorted(unknown)[0]
            raise _invalid("addition", name, "InvalidField", f"{name} is not an addition field")
        fields = self._check_addition_fields(body, creating=True)
        product = fields.pop("product")
        aid = self._next_id("addition")
        record: dict[str, Any] = {
            "id": aid,
            "product": {"id": product["id"], "identifier": product["identifier"]},
            "quantity": Decimal(0),
            "lessIncluded": Decimal(0),
            "unitPrice": product["price"],
            "unitCost": product["cost"],
            "billCustomer": "Billable",
            "effectiveDate": date.today().isoformat() + "T00:00:00Z",
            "cancelledDate": None,
            "taxableFlag": bool(product.get("taxableFlag")),
            "serialNumber": None,
            "invoiceDescription": product.get("customerDescription") or product["description"],
            "purchaseItemFlag": False,
            "specialOrderFlag": False,
            "agreementId": agreement["id"],
            "description": product["description"],
            "billedQuantity": Decimal(0),
            "uom": "Each",
            "agreementStatus": agreement.get("agreementStatus", "Active"),
            "_info": self._info(),
        }
        record.update(fields)
        self._recompute(record)
        self.additions[aid] = record
        return record

    def _check_addition_fields(self, body: dict, *, creating: bool) -> dict:
        fields: dict[str, Any] = {}
        for key, value in body.items():
            if key in ("id", "agreementId", "_info"):
                continue
            if key not in ADDITION_WRITABLE:
                raise _invalid("addition", key, "InvalidField", f"{key} cannot be changed")
            fields[key] = value
        if creating or "product" in fields:
            ref = fields.get("product")
            if not isinstance(ref, dict) or not (ref.get("id") or ref.get("identifier")):
                raise _invalid("addition", "product", "Required", "product is required")
            fields["product"] = self._catalog_ref(ref)
        if creating and "billCustomer" not in fields:
            raise _invalid("addition", "billCustomer", "Required", "billCustomer is required")
        if "billCustomer" in fields and fields["billCustomer"] not in BILL_CUSTOMER:
            raise _invalid(
                "addition",
                "billCustomer",
                "InvalidValue",
                f"billCustomer must be one of {', '.join(BILL_CUSTOMER)}",
            )
        for name in ADDITION_NUMBERS:
            if name in fields:
                value = fields[name]
                if isinstance(value, bool) or not isinstance(value, int | Decimal):
                    raise _invalid("addition", name, "InvalidValue", f"{name} must be a number")
                fields[name] = _double(value)
        for name, limit in MAX_LENGTHS.items():
            value = fields.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise _invalid(
                    "addition",
                    name,
                    "MaxLengthField",
                    f"The field {name} must be a string with a maximum length of {limit}.",
                )
        for name in ("effectiveDate", "cancelledDate"):
            value = fields.get(name)
            if value is not None:
                try:
                    datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                except ValueError:
                    raise _invalid(
                        "addition", name, "InvalidValue", f"{name} is not a date"
                    ) from None
        return fields

    def _catalog_ref(self, ref: dict) -> dict:
        if ref.get("id") is not None:
            item = self.catalog.get(int(ref["id"]))
        else:
            wanted = str(ref.get("identifier")).casefold()
            item = next(
                (i for i in self.catalog.values() if str(i["identifier"]).casefold() == wanted),
                None,
            )
        if item is None:
            raise _invalid("addition", "product", "NotFound", f"Product {ref!r} not found")
        return item

    def _recompute(self, record: dict) -> None:
        billable = Decimal(record["quantity"]) - Decimal(record.get("lessIncluded") or 0)
        record["extPrice"] = Decimal(record.get("unitPrice") or 0) * billable
        record["extCost"] = Decimal(record.get("unitCost") or 0) * billable
        record["margin"] = record["extPrice"] - record["extCost"]
        record["_info"] = self._info()

    def _patch_addition(self, agreement_id: int, addition_id: int, *, query, body) -> _Response:
        record = self._addition(agreement_id, addition_id)
        if not isinstance(body, list) or not body:
            raise ApiError(
                400, "InvalidObject", "PATCH expects a non-empty list of patch operations"
            )
        changes: dict[str, Any] = {}
        for op in body:
            if not isinstance(op, dict) or op.get("op") not in ("replace", "add"):
                raise ApiError(
                    400, "InvalidObject", f"Unsupported patch operation {op!r}: use replace"
                )
            path = str(op.get("path") or "").strip("/")
            if path not in ADDITION_WRITABLE:
                raise _invalid("addition", path, "InvalidField", f"{path!r} cannot be patched")
            changes[path] = op.get("value")
        fields = self._check_addition_fields(changes, creating=False)
        if "product" in fields:
            product = fields["product"]
            fields["product"] = {"id": product["id"], "identifier": product["identifier"]}
        record.update(fields)
        self._recompute(record)
        return _Response(200, copy.deepcopy(record))

    def _put_addition(self, agreement_id: int, addition_id: int, *, query, body) -> _Response:
        record = self._addition(agreement_id, addition_id)
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidObject", "addition object is invalid: expected an object")
        fields = self._check_addition_fields(body, creating=True)
        product = fields["product"]
        fields["product"] = {"id": product["id"], "identifier": product["identifier"]}
        for name in ADDITION_WRITABLE - set(fields):
            if name in ("quantity", "lessIncluded", "billedQuantity"):
                record[name] = Decimal(0)
            elif name not in ("unitPrice", "unitCost", "effectiveDate", "uom"):
                record[name] = None if not name.endswith("Flag") else False
        record.update(fields)
        self._recompute(record)
        return _Response(200, copy.deepcopy(record))

    def _delete_addition(self, agreement_id: int, addition_id: int, *, query, body) -> _Response:
        self._addition(agreement_id, addition_id)
        del self.additions[addition_id]
        return _Response(204)


class _PayloadError(ApiError):
    def __init__(self, status: int, payload: dict) -> None:
        Exception.__init__(self, payload.get("message", ""))
        self.status = status
        self.payload = payload


def _basic_auth(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def _write(req: BaseHTTPRequestHandler, response: _Response) -> None:
    data = b"" if response.payload is None else _dumps(response.payload).encode("utf-8")
    try:
        req.send_response(response.status)
        if data:
            req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        for name, value in response.headers.items():
            req.send_header(name, value)
        req.end_headers()
        if data:
            req.wfile.write(data)
        req.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (e.g. its timeout fired during an injected delay)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeConnectWise
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()
    server_version = "FakeConnectWise/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.owner._handle(self, "POST")

    def do_PATCH(self) -> None:
        self.owner._handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.owner._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.owner._handle(self, "DELETE")
