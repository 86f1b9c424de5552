"""What plugins declare through the ``register_*`` hooks, and how the core merges it.

Declarations are plain frozen dataclasses so a plugin needs nothing but ``core`` to make
them. ``merge`` is the one place that refuses duplicate codes, naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

LEVELS = ("provider", "reseller", "customer")
ALL = "__all__"  # DefaultRole.privileges: every privilege of the role's level


@dataclass(frozen=True)
class PluginMeta:
    """Metadata a plugin module exposes as ``PLUGIN``."""

    name: str
    title: str
    version: str
    license_feature: str | None = None
    api_version: int = 1
    description: str = ""
    essential: bool = False  # cannot be disabled (the core itself)


@dataclass(frozen=True)
class Privilege:
    code: str
    title: str
    group: str
    levels: tuple[str, ...] = LEVELS
    description: str = ""


@dataclass(frozen=True)
class AccountType:
    """A kind of account in the tree.

    ``child_types`` are the types an account of this type may own. ``check_parent`` may
    refuse a particular parent with a message (e.g. sub-resellers switched off).
    ``child_terms(account, child_type)`` names the billing terms an account of this type
    sets for a new child of ``child_type``: ``{field: (value, why)}`` (a reseller's customers
    bill on its profile's Billing Cycle); the new-account form shows them fixed, with the
    why, instead of a default that would not be saved (since API 2).
    """

    code: str
    title: str
    level: str
    profile_schema: type | None = None
    child_types: tuple[str, ...] = ()
    parent_types: tuple[str, ...] = ()
    check_parent: Callable[[Any], str | None] | None = None
    child_terms: Callable[[Any, str], dict[str, tuple[Any, str]]] | None = None


@dataclass(frozen=True)
class InvoiceFormat:
    code: str
    title: str
    media_type: str
    extension: str
    render: Callable[[dict], bytes]


@dataclass(frozen=True)
class BillingConnector:
    code: str
    title: str
    settings_schema: type | None
    test: Callable[[dict], str]
    push: Callable[[dict, dict], list]


@dataclass(frozen=True)
class DefaultRole:
    level: str
    code: str
    name: str
    description: str
    privileges: tuple[str, ...] | str = ALL


@dataclass(frozen=True)
class MenuItem:
    """An entry of the panel's navigation (see the ``register_menu_items`` hook).

    ``privilege`` is who sees it: ``None`` for every logged-in user, a code such as
    ``"users.view"`` for the holders of that privilege, or a tuple of codes such as
    ``("users.view", "roles.manage")`` meaning *any of these* (the holder of either sees it).
    Hiding an entry is only a convenience: the page behind it checks privileges itself.
    """

    label: str
    endpoint: str
    privilege: str | tuple[str, ...] | None = None
    where: str = "main"  # "main" navigation or "account" tab
    order: int = 100
    levels: tuple[str, ...] = LEVELS  # account levels where an account tab applies

    @property
    def privileges(self) -> tuple[str, ...]:
        """The codes that show the entry (any one suffices); empty: no privilege needed."""
        if self.privilege is None:
            return ()
        if isinstance(self.privilege, str):
            return (self.privilege,)
        return tuple(self.privilege)

    def visible_with(self, has: Callable[[str], bool]) -> bool:
        """Whether a user for whom ``has(code)`` tells what they hold sees the entry."""
        codes = self.privileges
        return not codes or any(has(code) for code in codes)


@dataclass(frozen=True)
class DashboardAlert:
    """One thing to look at on the dashboard (see the ``dashboard_alerts`` hook): ``title``
    ("Failed e-mail sends"), how many, where to see them (a panel URL, or ``None``) and up
    to a few ``lines`` naming the latest ones."""

    title: str
    count: int
    url: str | None = None
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Charge:
    """One invoice line a plugin contributes; amounts are computed and rounded by the engine.

    ``unit_price`` is in major units as a Decimal (it may carry more digits than the
    currency); ``group`` puts the line under a heading with a subtotal (billing units).

    Coverage (every day billed once): ``coverage`` names what the line bills days of (a key
    such as ``"myplugin:<account id>:<thing id>"``, at most 120 characters) and
    ``service_start``/``service_end`` the days, ``[start, end)`` within the period (default:
    the whole period). The engine records them in the invoice's transaction and the database
    refuses days of a key billed already; a charge starting before what its key is billed
    through (``core.billing.coverage.key_through``) is left out and reported as a failure.
    Without ``coverage`` the charge counts as a charge for the whole period under the key
    ``charges:<account>:<source>``, and after a cycle-day change only its share of the days
    not billed yet is billed.
    """

    description: str
    quantity: Decimal
    unit_price: Decimal
    unit: str = ""
    product_code: str = ""
    group: str | None = None
    fraction: Decimal = Decimal(1)
    source: str = ""
    coverage: str | None = None
    service_start: date | None = None
    service_end: date | None = None


@dataclass
class Declared:
    """One declaration with the plugin that made it."""

    item: Any
    plugin: str


class DuplicateCodeError(RuntimeError):
    pass


def merge(kind: str, results: Iterable[tuple[str, list]]) -> dict[str, Declared]:
    """Merge ``(plugin, [items])`` pairs into ``code -> Declared``; duplicates are fatal."""
    merged: dict[str, Declared] = {}
    for plugin, items in results:
        for item in items or ():
            key = item.code if hasattr(item, "code") else item.endpoint
            if kind == "default role":
                key = f"{item.level}:{item.code}"
            if key in merged:
                raise DuplicateCodeError(
                    f"{kind} '{key}' is declared by both plugin '{merged[key].plugin}' "
                    f"and plugin '{plugin}'"
                )
            merged[key] = Declared(item, plugin)
    return merged


@dataclass
class Catalog:
    """Everything declared by every installed plugin, filtered on demand by enabled set."""

    privileges: dict[str, Declared] = field(default_factory=dict)
    account_types: dict[str, Declared] = field(default_factory=dict)
    invoice_formats: dict[str, Declared] = field(default_factory=dict)
    billing_connectors: dict[str, Declared] = field(default_factory=dict)
    default_roles: dict[str, Declared] = field(default_factory=dict)
    menu_items: list[Declared] = field(default_factory=list)


@dataclass(frozen=True)
class InvoiceOptions:
    """An issuer's answer for one customer invoice (see the ``invoice_options`` hook)."""

    create: bool = True
    formats: tuple[str, ...] | None = None  # None: every enabled format
    skip_reason: str = ""
