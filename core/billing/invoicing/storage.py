"""Rendered invoice files: written once into STORAGE_DIR, recorded, served from there.

Which formats an invoice has is its issuer's choice, decided in one place
(:func:`wanted_formats`: the ``invoice_options`` answer, e.g. a reseller profile's Customer
Invoice Type, else every enabled format). Only those are rendered, stored, listed, offered and
served; any other format answers 404 and is never rendered.

A render failure never loses an invoice: the invoice is committed before rendering, the failure
is logged, and :func:`file_for` renders the missing (wanted) format on the first download.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from flask import current_app, g, has_request_context

from core.billing.invoicing import documents
from core.billing.models import Invoice, InvoiceFile
from core.current import host
from core.errors import BillhiveError, NotFound
from core.models import Account

log = logging.getLogger("billhive.billing")


class RenderFailed(BillhiveError):
    """A format could not be rendered now; the invoice is intact, try again later."""

    status = 503
    code = "render_failed"


def storage_dir() -> Path:
    return Path(current_app.config["STORAGE_DIR"])


_UNSET = object()


def _account(account_id: int, accounts: dict | None):
    """An account by id, read once per request (or per ``accounts`` dict) for lists."""
    if accounts is None:
        accounts = g.setdefault("billhive_accounts", {}) if has_request_context() else {}
    if account_id not in accounts:
        accounts[account_id] = Account.get_by_id(account_id)
    return accounts[account_id]


def issuer_choice(invoice: Invoice, accounts: dict | None = None) -> tuple[str, ...] | None:
    """What the issuer's ``invoice_options`` answer names for this invoice (a reseller's
    profile: Customer Invoice Type RAW / PDF / Both), None when it leaves the default."""
    rel = invoice.__rel__
    issuer = rel.get("issuer") or _account(invoice.issuer_id, accounts)
    account = rel.get("account") or _account(invoice.account_id, accounts)
    period = (invoice.period_start, invoice.period_end) if invoice.period_start else None
    options = host().hook("invoice_options")(issuer=issuer, account=account, period=period)
    return None if options is None else options.formats


def wanted_formats(invoice: Invoice, accounts: dict | None = None, chosen=_UNSET) -> list[str]:
    """THE formats of this invoice, the one place that decides them: what its issuer's
    ``invoice_options`` answer names (a reseller's profile), else every enabled format; only
    enabled formats. These are rendered, stored, listed in the API's ``files``, offered in the
    panel and downloadable; any other format answers 404 and is never rendered.

    ``chosen``: that answer's formats when the caller asked the hook already (a bill run,
    when it wrote the invoice: the same hook, so the same answer; None = every format)."""
    enabled = host().invoice_formats()
    formats = issuer_choice(invoice, accounts) if chosen is _UNSET else chosen
    return [code for code in (enabled if formats is None else formats) if code in enabled]


def render_one(invoice: Invoice, code: str, document: dict | None = None) -> InvoiceFile:
    fmt = host().invoice_formats().get(code)
    if fmt is None:
        raise NotFound(f"invoice format '{code}' is not available")
    data = fmt.render(document or documents.build(invoice))
    name = (invoice.number or f"draft-{invoice.id}").replace("/", "_")
    relative = Path("invoices") / str(invoice.issuer_id) / f"{name}.{fmt.extension}"
    target = storage_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    values = {"path": str(relative), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # one statement whether or not a record exists (re-rendered, or another process's)
    InvoiceFile.insert(invoice=invoice.id, format=code, **values).on_conflict(
        conflict_target=[InvoiceFile.invoice, InvoiceFile.format], update=values
    ).execute()
    return InvoiceFile(invoice=invoice.id, format=code, **values)


def render_all(invoice: Invoice, lines: list[dict] | None = None, chosen=_UNSET) -> list[str]:
    """Render every wanted format not stored yet; returns error messages (empty when all
    went well). ``lines``: the invoice's line rows when the caller has them (see
    :func:`documents.build`); ``chosen``: see :func:`wanted_formats`."""
    if invoice.status == "draft":
        return []
    errors = []
    stored = {
        code
        for (code,) in InvoiceFile.select(InvoiceFile.format)
        .where(InvoiceFile.invoice == invoice.id)
        .tuples()
    }
    wanted = [code for code in wanted_formats(invoice, chosen=chosen) if code not in stored]
    document = documents.build(invoice, lines) if wanted else None
    for code in wanted:
        try:
            render_one(invoice, code, document)
        except Exception as exc:  # noqa: BLE001 - recorded; rendered again on download
            log.exception("rendering %s of invoice %s failed", code, invoice.id)
            errors.append(f"{invoice.number}: rendering {code} failed: {exc}")
    return errors


def file_for(invoice: Invoice, code: str) -> tuple[bytes, object, InvoiceFile]:
    """(bytes, InvoiceFormat, record) from storage. Only the invoice's wanted formats are
    served (:func:`wanted_formats`); a wanted file that is missing (its render failed) is
    rendered first; any other format is NotFound and never rendered."""
    code = code.upper()
    fmt = host().invoice_formats().get(code)
    if fmt is None:
        available = ", ".join(sorted(host().invoice_formats()))
        raise NotFound(f"invoice format '{code}' is not available (available: {available})")
    if invoice.status == "draft":
        raise NotFound("a draft has no files; issue it first")
    wanted = wanted_formats(invoice)
    if code not in wanted:
        raise NotFound(
            f"invoice {invoice.number} has no {code} file: its issuer sends "
            f"{' and '.join(wanted) or 'no file'}"
        )
    record = InvoiceFile.get_or_none(invoice=invoice.id, format=code)
    path = storage_dir() / record.path if record else None
    if record is None or not path.exists():
        try:
            record = render_one(invoice, code)
        except BillhiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - the invoice stays; say what failed
            log.exception("rendering %s of invoice %s failed", code, invoice.id)
            raise RenderFailed(
                f"{invoice.number}: rendering {code} failed ({exc}); the invoice is intact, "
                "try again later"
            ) from None
        path = storage_dir() / record.path
    return path.read_bytes(), fmt, record
