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
class PushContext:
    """What a connector's ``items`` is asked about: one issued invoice of ``customer``,
    pushed through the connector settings of ``account`` (the nearest account above the
    customer that has them). ``link`` is the customer's confirmed link (a
    ``core.connectors.models.ConnectorLink``) for a connector with ``links=True``, else None;
    ``document`` is the invoice as plain data (``core.billing.invoicing.documents``)."""

    account: Any
    customer: Any
    invoice: Any
    document: dict
    link: Any = None


@dataclass(frozen=True)
class PushItem:
    """One thing to push for one invoice, kept by the core as a sync item until it is done.

    ``key`` is unique per invoice and connector (a replay finds the same item);
    ``external_key`` is what the outside system knows it by: an older invoice's item still
    to push is superseded by a newer invoice's item with the same external key."""

    key: str
    external_key: str
    product_code: str = ""
    quantity: str = ""
    remote_product: str = ""
    unique_id: str = "*"
    level: int = 0
    target_id: int | None = None
    mapping_id: int | None = None
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PushResult:
    """What a successful push did: ``outcome`` is ``created``, ``updated`` or ``unchanged``."""

    outcome: str
    remote_id: int | None = None
    message: str = ""


class PushFailed(Exception):
    """A connector's ``push`` could not push an item; ``message`` says why, for a person.

    The item is pushed again by the next sync. ``uncertain=True``: the outside system may
    have received it (an answer was lost); the next push must find it by its external key
    rather than send it twice."""

    def __init__(self, message: str, uncertain: bool = False):
        super().__init__(message)
        self.message = message
        self.uncertain = uncertain


@dataclass(frozen=True)
class BillingConnector:
    """An outside system issued invoices are pushed to; ``core.connectors`` runs it.

    The core keeps the connector's settings per account (``settings_schema`` fields with
    ``metadata={"secret": True}`` are encrypted at rest and only ever shown masked), its
    mappings and customer links, the sync items, runs and retries. The connector says:

    * ``test(settings) -> str``: a sentence for a person (what worked, or what to fix);
    * ``items(context: PushContext) -> list[PushItem]``: what an issued invoice pushes
      (``[]``: nothing);
    * ``push(session, item) -> PushResult``: push one item, or raise :class:`PushFailed`;
      ``item`` is the stored sync item (the attributes of :class:`PushItem`, plus
      ``invoice_id``, ``customer_id`` and ``attempts``);
    * ``session(settings)``: a context manager giving the ``session`` handed to ``push``
      for one sync (default: the settings themselves);
    * ``clean(settings) -> settings``: checks beyond the schema, with the stored secrets
      filled in; raises ``core.errors.ValidationFailed`` naming the field;
    * ``reconcile(session, account, items, full) -> list[str]``: run before a sync pushes
      (may add items); returns problems for the run's message;
    * ``report(session) -> (counts, notes)``: after the pushes, extra counts and notes;
    * ``links``: pushes only for customers with a confirmed link, and a full sync pushes
      each linked customer's latest issued invoice again (a new mapping takes effect);
    * ``panel``: the endpoint of the connector's own pages (mappings, links), if any;
    * ``view_privilege``/``edit_privilege``: what the caller holds to see the connector's
      settings and sync log, and to change its settings, test and retry it, on the
      Connectors page and API (default ``billing.view``/``billing.edit``).
    """

    code: str
    title: str
    settings_schema: type | None  # a marshmallow Schema class; None: no settings
    test: Callable[[dict], str]
    push: Callable[[Any, Any], PushResult]
    items: Callable[[PushContext], list[PushItem]]
    session: Callable[[dict], Any] | None = None
    clean: Callable[[dict], dict] | None = None
    reconcile: Callable[..., list[str]] | None = None
    report: Callable[[Any], tuple[dict, list[str]]] | None = None
    links: bool = False
    panel: str | None = None
    view_privilege: str = "billing.view"
    edit_privilege: str = "billing.edit"


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
