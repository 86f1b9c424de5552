"""The panel's global search: what the search box in the header finds.

Three kinds of answers, each within the caller's subtree and privileges:

* **sections** of the panel by name: the main menu items and the tabs of the caller's own
  account page they may open (``register_menu_items`` of the core and every enabled plugin,
  filtered exactly as the menu is), so typing "roles" offers the Roles page the reseller
  role-wizard document tells people to find with the Search tool;
* **accounts** by name or e-mail (containing the text, any case) or by id (``accounts.view``);
* **invoices** by number (containing the text, any case; ``billing.view``).

Accounts and invoices come from the same list declarations as the Accounts and Invoices
pages (``core.find.lists``), so the search box finds what those lists would, no more.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for

from core import rbac
from core.find import lists

PER_KIND = 8  # answers of each kind the box shows; the pages behind "all" have the rest


@dataclass
class Hit:
    kind: str  # "section", "account", "invoice"
    label: str
    detail: str
    url: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "detail": self.detail, "url": self.url}


def sections(user, text: str) -> list[Hit]:
    from core.panel.jinja import account_tabs, main_menu

    needle = text.casefold()
    hits = [Hit("section", label, "Menu", href) for label, href in main_menu()]
    own = user.account
    hits += [
        Hit("section", label, f"Tab of your account ({own.name})", href)
        for label, href, _endpoint in account_tabs(own)
    ]
    return [h for h in hits if needle in h.label.casefold()]


def accounts(user, text: str, limit: int = PER_KIND, count: bool = True) -> tuple[list[Hit], int]:
    if not rbac.has(user, "accounts.view"):
        return [], 0
    args = {"q": text, "sort": "name", "page": 1, "per_page": limit}
    page = lists.ACCOUNTS.apply(lists.accounts_query(user), args, user, count=count)
    hits = [
        Hit(
            "account",
            a.name,
            " · ".join(x for x in (f"#{a.id}", a.type, a.email) if x),
            url_for("panel.account", account_id=a.id),
        )  # fmt: skip
        for a in page.items
    ]
    return hits, page.total


def invoices(user, text: str, limit: int = PER_KIND, count: bool = True) -> tuple[list[Hit], int]:
    if not rbac.has(user, "billing.view"):
        return [], 0
    args = {"q": text, "sort": "-id", "page": 1, "per_page": limit}
    page = lists.INVOICES.apply(lists.invoices_query(user), args, user, count=count)
    names = _account_names({i.account_id for i in page.items})
    hits = [
        Hit(
            "invoice",
            i.number or f"Draft {i.id}",
            f"{i.status} · {names.get(i.account_id, '')}",
            url_for("billing.invoice_page", invoice_id=i.id),
        )  # fmt: skip
        for i in page.items
    ]
    return hits, page.total


def _account_names(ids: set[int]) -> dict[int, str]:
    from core.models import Account

    if not ids:
        return {}
    return {
        a.id: a.name for a in Account.select(Account.id, Account.name).where(Account.id.in_(ids))
    }


def search(user, text: str, *, count: bool = True) -> dict:
    """Everything the box offers for ``text`` (stripped; nothing for an empty text).
    ``count=False`` (as it is typed) leaves out the totals of all matches."""
    text = (text or "").strip()
    if not text:
        return {"q": "", "sections": [], "accounts": [], "invoices": [], "totals": {}}
    found_accounts, account_total = accounts(user, text, count=count)
    found_invoices, invoice_total = invoices(user, text, count=count)
    return {
        "q": text,
        "sections": sections(user, text),
        "accounts": found_accounts,
        "invoices": found_invoices,
        "totals": {"accounts": account_total, "invoices": invoice_total},
    }
