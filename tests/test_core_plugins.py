"""The plugin host: discovery, refusals at start-up, enabled state shared by every process,
and what a disabled plugin leaves behind."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.plugins import PluginLoadError
from core.registry import DuplicateCodeError
from tests.conftest import PASSWORD, World
from tests.plugins import notes

NOTES = {"notes": "tests.plugins.notes"}
GATED = {"gated": "tests.plugins.gated"}


def test_two_plugins_declaring_the_same_privilege_are_refused_at_start_up(make_app):
    with pytest.raises(DuplicateCodeError) as err:
        make_app(
            plugins=[], modules={"dup_a": "tests.plugins.dup_a", "dup_b": "tests.plugins.dup_b"}
        )
    message = str(err.value)
    assert "reports.view" in message
    assert "'dup_a'" in message and "'dup_b'" in message


def test_a_plugin_that_fails_to_import_is_reported_by_name(make_app):
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules={"broken": "tests.plugins.broken", **NOTES})
    assert "plugin 'broken'" in str(err.value)
    assert "notes backend library is missing" in str(err.value)


def test_a_plugin_needing_a_newer_hook_api_is_refused(make_app):
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules={"future": "tests.plugins.future"})
    assert "plugin 'future'" in str(err.value)
    assert "version 99" in str(err.value)


@pytest.mark.parametrize("name, installed, refusal", [
    ("squatter", [], "plugin 'squatter': model Ledger has the table 'invoice'; a plugin's "
                     "tables start with its name: 'squatter_...'"),
    ("invoice", [], "plugin 'invoice': model Line has the table 'invoice_line', which plugin "
                    "'core' declares (model InvoiceLine)"),
    ("billing", ["billing_units"], "plugin 'billing': model Crew has the table "
                                   "'billing_units_team', which plugin 'billing_units' "
                                   "declares (model Team)"),
])  # fmt: skip
def test_a_plugin_taking_a_table_not_its_own_is_refused(make_app, name, installed, refusal):
    """A table without the plugin's name in front; one of the core's under a plugin whose name
    passes the prefix rule; another plugin's."""
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=installed, modules={name: f"tests.plugins.{name}", **NOTES})
    assert refusal in str(err.value)


def test_models_declared_under_another_function_name_are_checked_too(make_app):
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules={"aliased_squatter": "tests.plugins.aliased_squatter"})
    assert "plugin 'aliased_squatter': model Ledger has the table 'invoice'" in str(err.value)


def test_a_listed_plugin_that_is_not_installed_is_refused_by_name(make_app):
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=["no_such_plugin"])
    assert "'no_such_plugin' is not installed" in str(err.value)


def test_only_the_listed_plugins_are_loaded_never_whatever_is_installed(make_app):
    from importlib.metadata import entry_points

    from core.plugins import ENTRY_POINT_GROUP, discover

    assert {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}  # some are installed
    app = make_app(plugins=[], modules=NOTES)
    assert set(app.extensions["billhive"].host.plugins) == {"core", "notes"}
    assert discover([], {}) == []


def test_installed_plugins_start_disabled_and_the_core_cannot_be_disabled(make_app):
    from core.errors import BillhiveError

    app = make_app(plugins=[], modules=NOTES)
    host = app.extensions["billhive"].host
    assert host.enabled == frozenset({"core"})
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        with pytest.raises(BillhiveError, match="part of the core"):
            host.set_enabled("core", False)


def _login(client, email="op@example.com"):
    resp = client.post("/login", data={"email": email, "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def test_enabling_in_one_process_takes_effect_in_another_without_restart(make_app):
    """Two app instances over one database stand for two worker processes."""
    worker_a = make_app(plugins=[], modules=NOTES)
    worker_b = make_app(plugins=[], modules=NOTES)
    host_a = worker_a.extensions["billhive"].host
    host_b = worker_b.extensions["billhive"].host
    db = worker_a.extensions["billhive"].database
    with worker_a.app_context(), db.connection_context():
        World()
    client_b = worker_b.test_client()
    _login(client_b)
    assert client_b.get("/notes/").status_code == 404
    assert "Notes" not in client_b.get("/accounts").get_data(as_text=True)

    with worker_a.app_context(), db.connection_context():
        assert host_a.set_enabled("notes", True)
        notes.Note.create(text="remember the milk")
    assert not host_b.is_enabled("notes")  # worker B has not looked yet

    resp = client_b.get("/notes/")
    assert resp.status_code == 200
    assert "remember the milk" in resp.get_data(as_text=True)
    assert host_b.is_enabled("notes")
    page = client_b.get("/accounts").get_data(as_text=True)
    assert 'href="/notes/"' in page

    with worker_a.app_context(), db.connection_context():
        assert host_a.set_enabled("notes", False)
    assert client_b.get("/notes/").status_code == 404
    assert 'href="/notes/"' not in client_b.get("/accounts").get_data(as_text=True)


def test_a_disabled_plugins_hooks_are_not_called_and_its_data_comes_back(make_app):
    app = make_app(plugins=[], modules=NOTES)
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        notes.CALLS.clear()
        world.add_account(world.provider, "Before enabling")
        assert notes.CALLS == []
        assert "notes.view" not in host.privileges()
        assert "agency" not in host.account_types()

        host.set_enabled("notes", True)
        account = world.add_account(world.provider, "While enabled")
        assert [c[0] for c in notes.CALLS] == ["account_created"]
        assert notes.CALLS[0][1]["account"].id == account.id
        notes.Note.create(text="kept")
        assert "notes.view" in host.privileges()
        assert "TXT" in host.invoice_formats()
        assert "notebook" in host.billing_connectors()

        host.set_enabled("notes", False)
        notes.CALLS.clear()
        world.add_account(world.provider, "After disabling")
        assert notes.CALLS == []
        assert host.call("charges_for_period", account=account, period=(None, None)) == []
        assert "TXT" not in host.invoice_formats()
        assert notes.Note.select().count() == 1  # its data stays

        host.set_enabled("notes", True)
        assert [n.text for n in notes.Note.select()] == ["kept"]
        assert host.call("charges_for_period", account=account, period=(None, None))


def test_a_disabled_plugins_privileges_grant_nothing_but_stay_on_the_role(make_app):
    from core import rbac, roles

    app = make_app(plugins=[], modules=NOTES)
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        host.set_enabled("notes", True)
        role = roles.create_role(
            None,
            world.provider,
            {"name": "Readers", "description": "r", "privileges": ["notes.view"]},
        )
        roles.assign(None, role, world.operator)
        assert rbac.has(world.operator, "notes.view")
        host.set_enabled("notes", False)
        assert not rbac.has(world.operator, "notes.view")
        assert rbac.stored_privileges(role) == {"notes.view"}
        host.set_enabled("notes", True)
        assert rbac.has(world.operator, "notes.view")


def test_a_plugin_blueprint_follows_the_app_that_serves_it(make_app):
    """One blueprint object registered in two apps with different enabled states."""
    first = make_app(plugins=[], modules=NOTES)
    db = first.extensions["billhive"].database
    with first.app_context(), db.connection_context():
        World()
        first.extensions["billhive"].host.set_enabled("notes", True)
    assert first.test_client().get("/notes/").status_code == 200


# -- licences ------------------------------------------------------------------------------


def test_an_add_on_needing_a_feature_cannot_be_enabled_without_a_licence(make_app):
    from core.errors import LicenseRequired

    app = make_app(plugins=[], modules=GATED)
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        with pytest.raises(LicenseRequired) as err:
            host.set_enabled("gated", True)
        assert "FT-TEST.001" in err.value.message
        assert "no licence is installed" in err.value.message
        assert not host.is_enabled("gated")


def test_an_enabled_add_on_whose_licence_expires_stays_enabled_keeps_data_refuses_new_work(
    make_app, license_keys
):
    from core import license_store
    from core.errors import LicenseRequired
    from core.models import LicenseRecord
    from tests.conftest import issue

    app = make_app(plugins=[], modules={**GATED, **NOTES})
    host = app.extensions["billhive"].host
    db = app.extensions["billhive"].database
    with app.app_context(), db.connection_context():
        World()
        license_store.install(
            issue(license_keys, ["FT-TEST.001"], expires=date.today() + timedelta(days=1)),
            host.license_key_paths,
        )
        host.set_enabled("gated", True)
        host.set_enabled("notes", True)
        notes.Note.create(text="data of the add-on")
    client = app.test_client()
    _login(client)
    assert client.post("/gated/work").status_code == 200

    with app.app_context(), db.connection_context():
        # time passes: the licence expired yesterday (rewrite as if installed long ago)
        expired = issue(
            license_keys,
            ["FT-TEST.001"],
            issued=date.today() - timedelta(days=60),
            expires=date.today() - timedelta(days=1),
        )
        LicenseRecord.update(text=expired).execute()
        assert host.is_enabled("gated")
        with pytest.raises(LicenseRequired) as err:
            host.require_licensed("gated")
        assert "FT-TEST.001" in err.value.message
        assert "expired" in err.value.message

    resp = client.post("/gated/work")
    assert resp.status_code == 403
    assert "FT-TEST.001" in resp.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        host.refresh(force=True)
        assert host.is_enabled("gated")  # still enabled
        assert notes.Note.select().count() == 1  # data untouched
