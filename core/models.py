"""The core's tables: the account tree, users, roles, plugin state, licences, audit.

Billing tables live in ``core.billing.models``; plugin tables in their plugin packages.
"""

from __future__ import annotations

import peewee as pw

from core.db import BaseModel, JSONField, create_missing, database, is_postgres, utcnow


class Account(BaseModel):
    """A node of the account tree. ``path`` is the materialized path ``/1/4/9/`` that makes
    subtree scoping a single indexed prefix match."""

    parent = pw.ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    type = pw.CharField(max_length=40)
    name = pw.CharField(max_length=200)
    path = pw.CharField(max_length=1000, default="", index=True)
    status = pw.CharField(max_length=20, default="active")
    email = pw.CharField(max_length=254, default="")
    address = pw.TextField(default="")
    currency = pw.CharField(max_length=3, default="EUR")
    bill_cycle_day = pw.SmallIntegerField(default=1)
    tax_rate = pw.CharField(max_length=20, default="0")  # percent, exact decimal text
    invoice_prefix = pw.CharField(max_length=20, default="INV-")
    profile = JSONField(default=dict)
    created_at = pw.DateTimeField(default=utcnow)

    @property
    def depth(self) -> int:
        return self.path.count("/") - 2

    def is_within(self, other: Account) -> bool:
        """True when self is other or below it."""
        return self.path.startswith(other.path)


class User(BaseModel):
    account = pw.ForeignKeyField(Account, backref="users", on_delete="RESTRICT")
    email = pw.CharField(max_length=254, unique=True)
    name = pw.CharField(max_length=200, default="")
    password_hash = pw.CharField(max_length=300)
    is_active = pw.BooleanField(default=True)
    failed_logins = pw.IntegerField(default=0)
    locked_until = pw.DateTimeField(null=True)
    last_login_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    # flask-login: the id in the session cookie is the login session's token, so every login
    # gets a new id and logging out kills it (see core.auth).
    session_token: str | None = None
    # the Impersonation row when the session's user is being acted as ("Log in as")
    impersonation = None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str | None:
        return self.session_token


class LoginSession(BaseModel):
    token = pw.CharField(max_length=64, unique=True)
    user = pw.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    created_at = pw.DateTimeField(default=utcnow)
    revoked_at = pw.DateTimeField(null=True)
    # last request seen (written at most once a minute): idle expiry, see core.users
    last_seen_at = pw.DateTimeField(null=True)


class LoginThrottle(BaseModel):
    """Login attempts per e-mail (known or not) and per client address, counted before the
    password is checked (see core.users.authenticate)."""

    key = pw.CharField(max_length=300, primary_key=True)  # "email:<e-mail>" / "address:<ip>"
    attempts = pw.IntegerField(default=0)
    window_start = pw.DateTimeField(default=utcnow)
    locked_until = pw.DateTimeField(null=True)


class ApiToken(BaseModel):
    user = pw.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = pw.CharField(max_length=100, default="api")
    token_hash = pw.CharField(max_length=64, unique=True)
    prefix = pw.CharField(max_length=12)
    created_at = pw.DateTimeField(default=utcnow)
    last_used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class Role(BaseModel):
    """A role of one account. Default roles carry ``default_code`` and take their privileges
    from the ``register_default_roles`` hook; custom roles list theirs in RolePrivilege."""

    account = pw.ForeignKeyField(Account, backref="roles", on_delete="CASCADE")
    name = pw.CharField(max_length=100)
    description = pw.CharField(max_length=500, default="")
    default_code = pw.CharField(max_length=60, null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "name"), True),)

    @property
    def is_default(self) -> bool:
        return self.default_code is not None


class RolePrivilege(BaseModel):
    role = pw.ForeignKeyField(Role, backref="privilege_rows", on_delete="CASCADE")
    code = pw.CharField(max_length=100)

    class Meta:
        indexes = ((("role", "code"), True),)


class UserRole(BaseModel):
    user = pw.ForeignKeyField(User, backref="role_links", on_delete="CASCADE")
    role = pw.ForeignKeyField(Role, backref="user_links", on_delete="RESTRICT")

    class Meta:
        indexes = ((("user", "role"), True),)


class PluginState(BaseModel):
    name = pw.CharField(max_length=100, primary_key=True)
    enabled = pw.BooleanField(default=False)
    changed_at = pw.DateTimeField(default=utcnow)


class StateVersion(BaseModel):
    """A counter every process compares on each request to notice plugin changes."""

    key = pw.CharField(max_length=40, primary_key=True)
    value = pw.IntegerField(default=0)


class LicenseRecord(BaseModel):
    text = pw.TextField()
    licensee = pw.CharField(max_length=200)
    expires = pw.DateField()
    features = JSONField(default=list)
    installed_at = pw.DateTimeField(default=utcnow)
    is_current = pw.BooleanField(default=True)


class AuditEntry(BaseModel):
    at = pw.DateTimeField(default=utcnow, index=True)
    actor = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    actor_label = pw.CharField(max_length=254)
    account = pw.ForeignKeyField(Account, null=True, backref="+", on_delete="SET NULL")
    action = pw.CharField(max_length=60, index=True)
    object_type = pw.CharField(max_length=60)
    object_id = pw.CharField(max_length=60, default="")
    before = JSONField(null=True)
    after = JSONField(null=True)


class AccountStatusChange(BaseModel):
    """One change of an account's status (core.lifecycle): who, when, why. The latest
    ``closed`` row's ``effective_on`` is the closing day bill runs stop at."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE", index=True)
    status = pw.CharField(max_length=20)
    previous = pw.CharField(max_length=20)
    effective_on = pw.DateField()
    actor = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    actor_label = pw.CharField(max_length=254)
    reason = pw.TextField(default="")
    at = pw.DateTimeField(default=utcnow)


class Impersonation(BaseModel):
    """A panel session in which ``impersonator`` acts as the session's user ("Log in as",
    core.impersonation). ``original_token`` is the impersonator's own session, restored by
    "Return to my account"."""

    session = pw.ForeignKeyField(LoginSession, unique=True, backref="+", on_delete="CASCADE")
    impersonator = pw.ForeignKeyField(User, backref="+", on_delete="CASCADE")
    impersonator_email = pw.CharField(max_length=254)
    original_token = pw.CharField(max_length=64)
    started_at = pw.DateTimeField(default=utcnow)
    ended_at = pw.DateTimeField(null=True)


CORE_MODELS = [
    Account,
    User,
    LoginSession,
    LoginThrottle,
    ApiToken,
    Role,
    RolePrivilege,
    UserRole,
    PluginState,
    StateVersion,
    LicenseRecord,
    AuditEntry,
    AccountStatusChange,
    Impersonation,
]


def create_core_tables() -> None:
    """The core's tables and indexes, where missing (every start)."""
    indexes = create_missing(CORE_MODELS)
    if is_postgres() and "account_path_bytes" not in indexes:
        # rbac.in_subtree compares paths byte by byte (COLLATE "C"); the column's own index
        # follows the database's collation, which may be a locale's
        database.execute_sql('CREATE INDEX "account_path_bytes" ON "account" ("path" COLLATE "C")')


def add_session_last_seen(migrator, db) -> None:
    """Core migration 3: ``LoginSession.last_seen_at`` (idle expiry) on a database made before
    it (a no-op on a new database, whose table the model made)."""
    from playhouse.migrate import migrate

    table = LoginSession._meta.table_name
    if "last_seen_at" not in {c.name for c in db.get_columns(table)}:
        migrate(migrator.add_column(table, "last_seen_at", LoginSession.last_seen_at))
