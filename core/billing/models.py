"""Billing tables: catalog, subscriptions, usage, invoices, numbering, stored files, bill runs.

Money columns are integer minor units (:class:`MinorUnitsField`); quantities, prices and
rates are exact decimal text (:class:`DecimalTextField`). Never peewee's DecimalField.

Every service day billed exactly once lives in the database (:mod:`core.billing.coverage`):
each bill-run invoice records what it bills as :class:`Coverage` rows, a half-open date range
``[start, end)`` per coverage key (``subscription:<id>`` for a subscription, a plugin's own key
for its charges), and the database refuses two rows of one key that overlap (a PostgreSQL
exclusion constraint, a SQLite trigger), whoever tries (a second process, a re-run after a
crash, a cycle-day change). ``Subscription.billed_through`` is the end of its coverage (the
first day not yet billed; NULL = never billed), advanced by the invoice's own transaction with
a compare-and-set. Each line that bills a subscription carries its ``service_start`` /
``service_end``. ``Invoice.run_period`` (the billing period's start, set on bill-run invoices
only) is indexed for the run's "already invoiced" report; it no longer guards anything.

Issued invoices are immutable: :meth:`Invoice.save` refuses any change but the status moves
issued -> paid / void, and :class:`InvoiceLine` refuses saving or deleting a line of an
invoice that is no longer a draft. Both raise :class:`ImmutableInvoice` (HTTP 409).
"""

from __future__ import annotations

import peewee as pw

from core.billing.money import DecimalTextField, MinorUnitsField
from core.db import BaseModel, JSONField, lock_row, utcnow
from core.errors import Conflict
from core.models import Account, User

PRODUCT_KINDS = ("recurring", "usage", "one_off")
INVOICE_KINDS = ("invoice", "credit_note")
INVOICE_STATUSES = ("draft", "issued", "paid", "void")
# status moves allowed on a stored invoice
TRANSITIONS = {
    "draft": {"draft", "issued", "void"},
    "issued": {"issued", "paid", "void"},
    "paid": {"paid"},
    "void": {"void"},
}
# the only columns that may change once an invoice left draft
MUTABLE_AFTER_ISSUE = {"status", "paid_at", "voided_at"}


class ImmutableInvoice(Conflict):
    """An issued invoice (or a line of one) was about to be changed."""


class Product(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    code = pw.CharField(max_length=60)
    name = pw.CharField(max_length=200)
    unit = pw.CharField(max_length=40, default="")
    kind = pw.CharField(max_length=20, default="recurring")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "code"), True),)


class PricePlan(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    product = pw.ForeignKeyField(Product, backref="plans", on_delete="RESTRICT")
    name = pw.CharField(max_length=200)
    currency = pw.CharField(max_length=3)
    recurring_price = DecimalTextField(default="0")  # major units per period
    usage_rate = DecimalTextField(default="0")  # major units per usage unit
    tiers = JSONField(null=True)  # [[up_to | null, unit_price], ...] volume tiers for usage
    created_at = pw.DateTimeField(default=utcnow)


class Subscription(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")  # the customer
    plan = pw.ForeignKeyField(PricePlan, backref="subscriptions", on_delete="RESTRICT")
    quantity = DecimalTextField(default="1")
    start = pw.DateField()
    end = pw.DateField(null=True)  # exclusive: first day no longer active
    external_id = pw.CharField(max_length=100, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    # exclusive end of what is billed (the first day not billed yet); NULL: never billed.
    # Moved only by a bill-run invoice's transaction, compare-and-set (core.billing.runs.engine)
    billed_through = pw.DateField(null=True)


class UsageRecord(BaseModel):
    # Three indexes, each serving a query: every one more is written by every imported row.
    # The account's own (FK) index and one on occurred_at alone were dropped (core migration
    # 10): (account, external_id) serves lookups by account, (account, occurred_at) the
    # periods, subscription_id the reseller's wholesale usage and the FK check.
    subscription = pw.ForeignKeyField(Subscription, backref="usage", on_delete="RESTRICT")
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT", index=False)
    quantity = DecimalTextField()
    occurred_at = pw.DateField()
    external_id = pw.CharField(max_length=100)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("account", "external_id"), True),  # idempotent imports
            (("account", "occurred_at"), False),  # a bill run sums one account's period
        )


class Invoice(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")  # billed
    issuer = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")  # the seller
    kind = pw.CharField(max_length=20, default="invoice")
    credit_for = pw.ForeignKeyField("self", null=True, backref="credit_notes", on_delete="RESTRICT")
    status = pw.CharField(max_length=10, default="draft", index=True)
    number = pw.CharField(max_length=40, null=True)
    period_start = pw.DateField(null=True)
    period_end = pw.DateField(null=True)
    run_period = pw.DateField(null=True)  # set by bill runs only: the billing period's start
    currency = pw.CharField(max_length=3)
    subtotal = MinorUnitsField(default=0)
    tax = MinorUnitsField(default=0)
    total = MinorUnitsField(default=0)
    tax_rate = pw.CharField(max_length=20, default="0")
    issued_at = pw.DateTimeField(null=True)
    due_date = pw.DateField(null=True)
    paid_at = pw.DateTimeField(null=True)
    voided_at = pw.DateTimeField(null=True)
    bill_run = pw.IntegerField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("account", "issuer", "run_period"), False),  # the "already invoiced" report
            (("issuer", "number"), True),
            (("account", "issued_at"), False),  # tenant-scoped invoice lists
            (("bill_run",), False),
        )

    def save(self, *args, **kwargs):
        if self.id is not None and not kwargs.get("force_insert"):
            stored = Invoice.get_or_none(Invoice.id == self.id)
            if stored is not None:
                _check_change(stored, self)
        return super().save(*args, **kwargs)

    def delete_instance(self, *args, **kwargs):
        # the row's lock, so an issue running now finishes first (and then this refuses)
        stored = lock_row(Invoice, self.id, key=True)
        if stored is not None and stored.status != "draft":
            raise ImmutableInvoice(
                f"invoice {stored.number or stored.id} is {stored.status}: it cannot be deleted"
            )
        return super().delete_instance(*args, **kwargs)


def _check_change(stored: Invoice, new: Invoice) -> None:
    if new.status not in TRANSITIONS.get(stored.status, set()):
        raise ImmutableInvoice(
            f"invoice {stored.number or stored.id} is {stored.status}: "
            f"it cannot become {new.status}"
        )
    if stored.status == "draft":
        return
    changed = []
    for name, field in Invoice._meta.fields.items():
        if name in MUTABLE_AFTER_ISSUE:
            continue
        before, after = stored.__data__.get(name), new.__data__.get(name)
        if isinstance(after, pw.Model):
            after = after.get_id()
        if field.db_value(before) != field.db_value(after):
            changed.append(name)
    if changed:
        raise ImmutableInvoice(
            f"invoice {stored.number or stored.id} is {stored.status} and immutable "
            f"(tried to change {', '.join(sorted(changed))}); correct it with a credit note",
            {name: ["cannot be changed on an issued invoice"] for name in changed},
        )


class InvoiceLine(BaseModel):
    invoice = pw.ForeignKeyField(Invoice, backref="lines", on_delete="CASCADE")
    position = pw.IntegerField()
    description = pw.CharField(max_length=500)
    quantity = DecimalTextField()
    unit = pw.CharField(max_length=40, default="")
    unit_price = DecimalTextField()
    fraction = DecimalTextField(default="1")
    amount = MinorUnitsField()
    product_code = pw.CharField(max_length=60, default="")
    group = pw.CharField(max_length=200, null=True)
    source = pw.CharField(max_length=100, default="")
    # the days this line bills, [service_start, service_end); NULL on hand-made lines
    service_start = pw.DateField(null=True)
    service_end = pw.DateField(null=True)

    class Meta:
        indexes = ((("invoice", "position"), True),)

    def _guard(self, what: str) -> None:
        # the invoice row's lock (core.db.lock_row) until the transaction ends: an issue
        # running now finishes first and then this refuses; one starting later waits for
        # this edit and issues the lines as they are then
        stored = lock_row(Invoice, self.invoice_id) if self.invoice_id else None
        status = stored.status if stored is not None else None
        if status is not None and status != "draft":
            raise ImmutableInvoice(f"a line of a {status} invoice cannot be {what}")

    def save(self, *args, **kwargs):
        self._guard("changed")
        return super().save(*args, **kwargs)

    def delete_instance(self, *args, **kwargs):
        self._guard("deleted")
        return super().delete_instance(*args, **kwargs)


class Coverage(BaseModel):
    """Days billed for one coverage key by one invoice: ``[start, end)``. The database refuses
    a row overlapping another row of the same key (core.billing.coverage installs the
    constraint); rows are written only inside a bill-run invoice's transaction."""

    key = pw.CharField(max_length=120)
    start = pw.DateField()
    end = pw.DateField()
    invoice = pw.ForeignKeyField(Invoice, backref="+", on_delete="CASCADE")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_coverage"
        indexes = ((("key", "end"), False),)
        constraints = [pw.Check('"start" < "end"')]


class InvoiceSequence(BaseModel):
    """Next number per issuer and document kind; incremented inside the issuing transaction
    (an UPDATE, so concurrent issuers queue on the row and a rollback gives the number back)."""

    issuer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    kind = pw.CharField(max_length=20)
    next_number = pw.IntegerField(default=1)

    class Meta:
        indexes = ((("issuer", "kind"), True),)


class InvoiceFile(BaseModel):
    invoice = pw.ForeignKeyField(Invoice, backref="files", on_delete="CASCADE")
    format = pw.CharField(max_length=20)
    path = pw.CharField(max_length=1000)
    size = pw.IntegerField()
    sha256 = pw.CharField(max_length=64)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("invoice", "format"), True),)


class BillRun(BaseModel):
    as_of = pw.DateField()
    scope = pw.ForeignKeyField(Account, null=True, backref="+", on_delete="SET NULL")
    status = pw.CharField(max_length=10, default="queued")  # queued running done failed
    total = pw.IntegerField(default=0)  # accounts to process
    done = pw.IntegerField(default=0)
    created = pw.IntegerField(default=0)
    skipped = pw.IntegerField(default=0)
    failures = JSONField(default=list)
    summary = JSONField(null=True)
    started_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    # an in-process run beats while it bills (core.billing.runs.records): a queued or running run
    # whose last beat is older than QUEUE_STALE_SECONDS died with its process: "interrupted"
    heartbeat_at = pw.DateTimeField(null=True)


class PendingRender(BaseModel):
    """A file a queued bill run wants and has not stored yet (core.billing.runs.queue): made when
    the bill task queues its render task, deleted when the file is stored; ``error`` is set
    when rendering failed (reported in the run's summary). A run is done only when none of
    its rows is left without an error; the sweeper queues the others again (a killed worker
    loses the render task it held, not the row)."""

    invoice = pw.ForeignKeyField(Invoice, backref="+", on_delete="CASCADE", index=False)
    format = pw.CharField(max_length=20)
    bill_run = pw.IntegerField(null=True)
    queued_at = pw.DateTimeField(default=utcnow)
    attempts = pw.IntegerField(default=0)
    error = pw.TextField(null=True)

    class Meta:
        indexes = (
            (("invoice", "format"), True),
            (("bill_run", "queued_at"), False),
        )


ITEM_STATUSES = ("pending", "running", "done", "failed")


class BillRunItem(BaseModel):
    """One account of a queued bill run (core.billing.runs.queue). The run's state lives here, not
    in the queue: a task claims its item (running, heartbeat_at), bills the account and marks
    it done or failed; an item left running with an old heartbeat belongs to a worker that
    died, and the sweeper puts it back on the queue. Exactly-once still comes from coverage
    (``billed_through`` and the database's refusal of overlapping coverage)."""

    bill_run = pw.ForeignKeyField(BillRun, backref="items", on_delete="CASCADE", index=False)
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    status = pw.CharField(max_length=10, default="pending")  # ITEM_STATUSES
    attempts = pw.IntegerField(default=0)
    error = pw.TextField(null=True)  # the last failure, for people
    detail = JSONField(null=True)  # {"failures": [...], "skipped": [...]} when not empty
    created = pw.IntegerField(default=0)  # invoices written by this item
    skipped = pw.IntegerField(default=0)
    heartbeat_at = pw.DateTimeField(null=True)  # claimed / last alive / last queued
    finished_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = (
            (("bill_run", "account"), True),
            (("bill_run", "status"), False),
            (("status", "heartbeat_at"), False),  # the sweeper
        )


BILLING_MODELS = [
    Product,
    PricePlan,
    Subscription,
    UsageRecord,
    Invoice,
    InvoiceLine,
    Coverage,
    InvoiceSequence,
    InvoiceFile,
    BillRun,
    BillRunItem,
    PendingRender,
]


# -- the account ledger (core.billing.ledger.entries, payments, statements) ---------------------------

LEDGER_KINDS = (
    "invoice",
    "credit_note",
    "payment",
    "refund",
    "prepaid_topup",
    "credit_applied",
    "reversal",
)
PAYMENT_KINDS = ("payment", "refund")


class LedgerImmutable(Conflict):
    """A ledger entry or payment was about to be changed or deleted: post a reversal."""


class _AppendOnly(BaseModel):
    """Rows are inserted, never updated or deleted, through the ORM (instances and queries)."""

    _what = "row"

    def save(self, *args, **kwargs):
        if self.id is not None and not kwargs.get("force_insert"):
            raise LedgerImmutable(
                f"{self._what} {self.id} is append-only: it cannot be changed; "
                "correct it with a reversing entry"
            )
        return super().save(*args, **kwargs)

    def delete_instance(self, *args, **kwargs):
        raise LedgerImmutable(
            f"{self._what} {self.id} is append-only: it cannot be deleted; "
            "correct it with a reversing entry"
        )

    @classmethod
    def update(cls, *args, **kwargs):
        raise LedgerImmutable(f"{cls._what}s are append-only: they cannot be updated")

    @classmethod
    def delete(cls, *args, **kwargs):
        raise LedgerImmutable(f"{cls._what}s are append-only: they cannot be deleted")


class Payment(_AppendOnly):
    """Money received from (``kind="payment"``) or paid back to (``"refund"``) an account,
    by ``payee``: the seller whose invoices it settles. ``amount`` is positive minor units."""

    _what = "payment"

    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    payee = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    kind = pw.CharField(max_length=10, default="payment")
    amount = MinorUnitsField()
    currency = pw.CharField(max_length=3)
    received_on = pw.DateField()
    method = pw.CharField(max_length=40, default="bank_transfer")
    reference = pw.CharField(max_length=200, default="")
    memo = pw.CharField(max_length=500, default="")
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "payee", "currency"), False),)


class LedgerEntry(_AppendOnly):
    """One transaction of an account's ledger. ``amount`` is signed minor units, debit
    positive (the account owes more). ``seller`` is the other party: the invoice's issuer or
    the payment's payee. ``posting_key`` is unique where set, so an invoice's own entry is
    posted exactly once. The balance is the SUM of the entries; it is never stored."""

    _what = "ledger entry"

    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    seller = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    kind = pw.CharField(max_length=20)
    amount = MinorUnitsField()
    currency = pw.CharField(max_length=3)
    occurred_on = pw.DateField()
    invoice = pw.ForeignKeyField(Invoice, null=True, backref="+", on_delete="RESTRICT")
    payment = pw.ForeignKeyField(Payment, null=True, backref="+", on_delete="RESTRICT")
    reverses = pw.ForeignKeyField("self", null=True, unique=True, backref="+",
                                  on_delete="RESTRICT")  # fmt: skip
    posting_key = pw.CharField(max_length=60, null=True, unique=True)
    memo = pw.CharField(max_length=500, default="")
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "currency", "occurred_on"), False),)


class Allocation(BaseModel):
    """Which money settles what: a payment or a credit note (the source) applied to an invoice
    or paid out by a refund (the target). Released (deleted) only when its source or target is
    reversed or voided, inside that transaction."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    payment = pw.ForeignKeyField(Payment, null=True, backref="+", on_delete="RESTRICT")
    credit_note = pw.ForeignKeyField(Invoice, null=True, backref="+", on_delete="RESTRICT")
    invoice = pw.ForeignKeyField(Invoice, null=True, backref="+", on_delete="RESTRICT")
    refund = pw.ForeignKeyField(Payment, null=True, backref="+", on_delete="RESTRICT")
    amount = MinorUnitsField()
    created_at = pw.DateTimeField(default=utcnow)


class PrepaidTopup(BaseModel):
    """Marks an invoice as a prepaid top-up: once paid, its total is prepaid credit."""

    invoice = pw.ForeignKeyField(Invoice, unique=True, backref="+", on_delete="CASCADE")
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)


class IdempotencyKey(BaseModel):
    """The first answer to a request sent with an ``Idempotency-Key`` header, per account."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    key = pw.CharField(max_length=255)
    request_hash = pw.CharField(max_length=64)
    status_code = pw.IntegerField(null=True)
    response = JSONField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "key"), True),)


class BillingSettings(BaseModel):
    """Payment settings of an account: billing contact, delivery e-mail, payment terms."""

    account = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    contact_name = pw.CharField(max_length=200, default="")
    contact_email = pw.CharField(max_length=254, default="")
    contact_phone = pw.CharField(max_length=40, default="")
    invoice_email = pw.CharField(max_length=254, default="")
    payment_terms_days = pw.IntegerField(null=True)  # net days; None = the default terms
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    updated_at = pw.DateTimeField(default=utcnow)


class PaymentMethod(BaseModel):
    """A payment method's DESCRIPTION ("Visa ending 4242, expires 12/28"), never its number."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    type = pw.CharField(max_length=20)
    description = pw.CharField(max_length=200)
    is_default = pw.BooleanField(default=False)
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)


LEDGER_MODELS = [
    Payment,
    LedgerEntry,
    Allocation,
    PrepaidTopup,
    IdempotencyKey,
    BillingSettings,
    PaymentMethod,
]
BILLING_MODELS += LEDGER_MODELS


# -- dunning (core.billing.ledger.dunning) -----------------------------------------------------------

DUNNING_LEVELS = ("reminder_1", "reminder_2", "final_notice")


class DunningLevel(BaseModel):
    """An issuer's setting of one dunning level (``DUNNING_LEVELS``); a level without a row
    has the defaults of :data:`core.billing.ledger.dunning.DEFAULT_LEVELS`. ``fee`` is minor units
    of ``fee_currency`` invoiced separately when the level is reached (0: no fee);
    ``suspend`` (final notice only) suspends the billed account."""

    issuer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    level = pw.CharField(max_length=20)
    days = pw.IntegerField()  # after the due date
    enabled = pw.BooleanField(default=True)
    fee = MinorUnitsField(default=0)
    fee_currency = pw.CharField(max_length=3, default="")
    suspend = pw.BooleanField(default=False)
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "dunning_level"
        indexes = ((("issuer", "level"), True),)


class DunningStep(BaseModel):
    """One dunning step taken: an invoice reached ``level`` on ``run_date``. The unique
    (invoice, level) key makes each step happen once, whoever runs it. Written in one
    transaction with its late-fee invoice; what follows the commit (the mail, the suspension,
    the hook) is marked here as done, so a run killed half-way is finished by the next."""

    invoice = pw.ForeignKeyField(Invoice, backref="+", on_delete="CASCADE")
    level = pw.CharField(max_length=20)
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    run_date = pw.DateField()
    days_overdue = pw.IntegerField()
    fee_invoice = pw.ForeignKeyField(Invoice, null=True, backref="+", on_delete="SET NULL")
    note = pw.CharField(max_length=500, default="")  # e.g. why no fee was charged
    mailed_at = pw.DateTimeField(null=True)
    mail_error = pw.TextField(null=True)
    suspended = pw.BooleanField(default=False)
    notified_at = pw.DateTimeField(null=True)  # invoice_overdue called
    completed_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "dunning_step"
        indexes = (
            (("invoice", "level"), True),
            (("completed_at",), False),
        )


class DunningPause(BaseModel):
    """An account whose invoices are not dunned while this row exists (paused by its seller)."""

    account = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    reason = pw.CharField(max_length=500, default="")
    paused_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    paused_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "dunning_pause"


DUNNING_MODELS = [DunningLevel, DunningStep, DunningPause]
BILLING_MODELS += DUNNING_MODELS
