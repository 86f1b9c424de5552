"""core.kit.testing, the fixtures plugin authors get, used in-process (the generated plugin's own
tests in test_devkit_scaffold.py use them through pytest): accounts at every level, users
holding exactly the privileges asked for, issued invoices, and clear refusals."""

from __future__ import annotations

import pytest

from core import rbac
from core.kit.testing import PASSWORD, Accounts


@pytest.fixture
def accounts(ctx):
    return Accounts(ctx)


def test_accounts_at_each_level_with_users_holding_exactly_the_privileges_asked(accounts):
    assert accounts.account("provider") == accounts.provider
    customer = accounts.account("customer")
    assert customer.type == "customer" and customer.parent_id == accounts.provider.id
    viewer = accounts.user("customer", privileges=["billing.view"])
    assert rbac.has(viewer, "billing.view") and not rbac.has(viewer, "invoices.issue")
    full = accounts.user("provider")
    assert full.account_id == accounts.provider.id and rbac.has(full, "plugins.manage")


def test_a_reseller_level_account_needs_a_plugin_declaring_one(accounts):
    with pytest.raises(LookupError) as err:
        accounts.account("reseller")
    assert "no enabled plugin declares an account type of level 'reseller'" in str(err.value)
    assert "add 'reseller_accounts' to billhive_plugins" in str(err.value)
    with pytest.raises(ValueError, match="level must be one of provider, reseller, customer"):
        accounts.account("partner")


def test_a_reseller_level_account_from_reseller_accounts_gets_a_sample_profile(
    ctx, accounts, install_license
):
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    reseller = accounts.account("reseller")
    assert reseller.type == "reseller" and reseller.profile["customer_invoice_type"] == "PDF"
    below = accounts.account("customer", parent=reseller)
    assert below.parent_id == reseller.id
    assert rbac.level_of(accounts.user("reseller", account=reseller).account) == "reseller"


def test_issue_invoice_gives_an_issued_numbered_invoice(accounts):
    invoice = accounts.issue_invoice()
    assert invoice.status == "issued" and invoice.number
    assert invoice.total == 6000  # 2 x 30.00, no tax


def test_users_log_in_with_the_shared_password(ctx, accounts):
    user = accounts.user("customer")
    resp = ctx.test_client().post("/login", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 302


def test_an_app_reused_by_a_later_test_starts_on_its_database_like_a_new_app(
    billhive_databases, backend, tmp_path
):
    """The module's app handed to a later test (``Apps``) runs start-up on that test's database
    inside its own app context (core migration 8 reads the configuration), and keeps nothing
    of the earlier test: its queue file and a pause of e-mail sending after a failure."""
    import time

    from core import db
    from core.kit.testing import Apps
    from core.migrations import SchemaMigration
    from core.tasks import get_queue

    apps = Apps(billhive_databases)
    urls = []

    def config(name):
        folder = tmp_path / name
        folder.mkdir()
        urls.append(billhive_databases.new(backend, folder))
        return {"TESTING": True, "DATA_DIR": str(folder / "data"), "DATABASE_URL": urls[-1],
                "SECRET_KEY": "test-secret", "PLUGINS": [], "PLUGIN_MODULES": {}}  # fmt: skip

    try:
        first = apps.get(config("first"))
        with first.app_context():
            get_queue()  # the first test's queue, in its folder
            first.extensions["billhive_mail"] = {"paused_until": time.monotonic() + 3600}
        apps.give_back()
        second_config = config("second")
        old = db.open_database(second_config["DATABASE_URL"])  # an install before migration 8
        with old.bind_ctx([SchemaMigration]), old.connection_context():
            SchemaMigration.delete().where(
                (SchemaMigration.plugin == "core") & (SchemaMigration.version == 8)
            ).execute()
            old.execute_sql("CREATE TABLE psa_connection (id INTEGER PRIMARY KEY)")
        old.close()

        second = apps.get(second_config)
        assert second is first
        with second.app_context(), second.extensions["billhive"].database.connection_context():
            assert get_queue().huey.storage.filename == str(tmp_path / "second/data/queue.db")
            assert "paused_until" not in second.extensions.get("billhive_mail", {})
            assert not second.extensions["billhive"].database.table_exists("psa_connection")
            assert SchemaMigration.get_or_none(plugin="core", version=8) is not None
    finally:
        apps.give_back()
        db.database.obj.close()
        for url in urls:
            billhive_databases.done(url)


def test_a_finished_tests_database_comes_back_as_the_template_was(
    billhive_databases, backend, tmp_path
):
    """PostgreSQL test databases are reused (made once, put back after each test): the next
    test finds no row, table or sequence position the last one left, and the template's own
    rows (the applied migrations, the plugins' state counter) as they were. SQLite gets a new
    copy each time."""
    from core import db
    from core.migrations import SchemaMigration
    from core.models import Account, StateVersion

    models = [Account, SchemaMigration, StateVersion]

    def use(name):
        folder = tmp_path / name
        folder.mkdir()
        url = billhive_databases.new(backend, folder)
        return url, db.open_database(url)

    def template_rows():
        return (sorted((m.plugin, m.version) for m in SchemaMigration.select()),
                sorted((s.key, s.value) for s in StateVersion.select()))  # fmt: skip

    first_url, database = use("first")
    with database.bind_ctx(models), database.connection_context():
        rows = template_rows()
        assert rows[0] and rows[1] and not Account.select().exists()
        for n in range(30):
            Account.create(name=f"Left behind {n}", type="customer")
        SchemaMigration.delete().execute()
        StateVersion.update(value=StateVersion.value + 7).execute()
        database.execute_sql("CREATE TABLE left_behind (id INTEGER PRIMARY KEY)")
    database.close()
    billhive_databases.done(first_url)

    seen = []
    for n in range(20):  # until the pool hands out the one put back (others may come first)
        url, database = use(f"later{n}")
        seen.append(url)
        with database.bind_ctx(models), database.connection_context():
            assert not Account.select().exists()
            assert template_rows() == rows
            assert not database.table_exists("left_behind")
            assert Account.create(name="Provider", type="provider").id == 1
        database.close()
        billhive_databases.done(url)
        if backend == "sqlite" or url == first_url:
            break
    assert first_url in seen or backend == "sqlite"  # the one put back was checked
