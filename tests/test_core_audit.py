"""The audit log: one entry per change, in the change's own transaction."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core import accounts, audit, license_store, roles, users
from core.errors import BillhiveError
from core.licenses import LicenseError
from core.models import Account, AuditEntry
from tests.conftest import PASSWORD, World, issue


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], modules={"notes": "tests.plugins.notes"})


class Log:
    def __init__(self):
        self.last = AuditEntry.select().count()

    def new(self) -> list[AuditEntry]:
        rows = list(AuditEntry.select().order_by(AuditEntry.id).offset(self.last))
        self.last += len(rows)
        return rows

    def one(self, action: str) -> AuditEntry:
        rows = self.new()
        assert [r.action for r in rows] == [action]
        return rows[0]


def test_every_change_writes_exactly_one_entry(world, ctx):
    host = ctx.extensions["billhive"].host
    op = world.operator
    log = Log()

    acc = accounts.create_account(
        op, {"name": "Audited", "type": "customer", "parent_id": world.provider.id}
    )
    entry = log.one("account.create")
    assert entry.actor_label == op.email and entry.after["name"] == "Audited"
    assert entry.account_id == acc.id

    accounts.update_account(op, acc, {"name": "Audited Ltd"})
    entry = log.one("account.update")
    assert entry.before["name"] == "Audited" and entry.after["name"] == "Audited Ltd"

    user = users.create_user(
        op, {"email": "u@example.com", "password": PASSWORD, "account_id": acc.id}
    )
    assert log.one("user.create").after["email"] == "u@example.com"

    role = roles.create_role(
        op, acc, {"name": "Viewer", "description": "v", "privileges": ["users.view"]}
    )
    assert log.one("role.create").after["privileges"] == ["users.view"]
    roles.update_role(op, role, {"privileges": ["users.view", "accounts.view"]})
    entry = log.one("role.update")
    assert entry.before["privileges"] == ["users.view"]
    assert entry.after["privileges"] == ["accounts.view", "users.view"]
    roles.assign(op, role, user)
    assert log.one("role.assign").after == {"role": "Viewer", "user": "u@example.com"}
    roles.unassign(op, role, user)
    assert log.one("role.unassign").before == {"role": "Viewer", "user": "u@example.com"}
    roles.delete_role(op, role)
    assert log.one("role.delete").before["name"] == "Viewer"

    host.set_enabled("notes", True, op)
    entry = log.one("plugin.enable")
    assert (entry.object_id, entry.before, entry.after) == (
        "notes",
        {"enabled": False},
        {"enabled": True},
    )
    host.set_enabled("notes", False, op)
    log.one("plugin.disable")
    host.set_enabled("notes", False, op)  # no change, no entry
    assert log.new() == []


def test_installing_a_licence_is_audited_and_a_refused_one_is_not(world, ctx, license_keys):
    host = ctx.extensions["billhive"].host
    log = Log()
    license_store.install(issue(license_keys, ["FT-1"]), host.license_key_paths, world.operator)
    entry = log.one("license.install")
    assert entry.after["features"] == ["FT-1"] and entry.actor_label == world.operator.email
    expired = issue(
        license_keys, ["FT-2"], expires=date.today() - timedelta(days=1),
        issued=date.today() - timedelta(days=9),
    )  # fmt: skip
    with pytest.raises(LicenseError):
        license_store.install(expired, host.license_key_paths, world.operator)
    assert log.new() == []


def test_a_change_that_fails_writes_no_entry(world, ctx):
    log = Log()
    with pytest.raises(BillhiveError):
        accounts.create_account(
            world.operator, {"name": "", "type": "customer", "parent_id": world.provider.id}
        )
    with pytest.raises(BillhiveError):
        users.create_user(
            world.operator,
            {"email": world.user_a.email, "password": PASSWORD, "account_id": world.customer_a.id},
        )
    assert log.new() == []


def test_a_change_rolled_back_by_a_failing_hook_leaves_neither_data_nor_entry(make_app):
    app = make_app(plugins=[], modules={"raising": "tests.plugins.raising"})
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        app.extensions["billhive"].host.set_enabled("raising", True)
        log, before = Log(), Account.select().count()
        with pytest.raises(RuntimeError, match="refusing account Doomed"):
            accounts.create_account(
                world.operator,
                {"name": "Doomed", "type": "customer", "parent_id": world.provider.id},
            )
        assert Account.select().count() == before
        assert log.new() == []


def test_an_escalation_attempt_is_refused_and_recorded_as_refused(world, ctx):
    log = Log()
    with pytest.raises(BillhiveError):
        roles.create_role(
            world.user_a,
            world.customer_a,
            {"name": "X", "description": "x", "privileges": ["audit.view"]},
        )
    entry = log.one("role.create.refused")
    assert entry.actor_label == world.user_a.email


def test_operators_read_the_audit_log_and_others_cannot(world, api, panel):
    operator, customer = api(world.operator), api(world.user_a)
    accounts.create_account(
        world.operator, {"name": "Seen", "type": "customer", "parent_id": world.provider.id}
    )
    rows = operator.get("/api/v1/audit").get_json()
    assert rows[0]["action"] == "account.create" and rows[0]["actor"] == world.operator.email
    assert customer.get("/api/v1/audit").status_code == 403
    page = panel(world.operator).get("/audit")
    assert page.status_code == 200 and "account.create" in page.get_data(as_text=True)
    assert panel(world.user_a).get("/audit").status_code == 404
    assert audit.actor_label(None) == "cli"
