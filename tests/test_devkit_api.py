"""The hook API as plugin authors meet it: version refusals, deprecation warnings naming the
plugin and the hook, unknown hooks refused by name, and hook tracing (BILLHIVE_TRACE_HOOKS).

Throwaway plugins are written into a temporary folder so each test states the plugin it loads.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import textwrap
import uuid

import pytest

from core import HOOK_API_VERSION, hookspecs
from core.plugins import PluginLoadError
from tests.conftest import World


@pytest.fixture
def write_plugin(tmp_path, monkeypatch):
    """``write_plugin(name, body, api_version=1)`` -> ``{name: module}`` for make_app."""
    folder = tmp_path / "throwaway_plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written = []

    def write(name: str, body: str = "", api_version: int = 1) -> dict[str, str]:
        module = f"devkit_{name}_{uuid.uuid4().hex[:8]}"
        header = (
            "from core import hookimpl\n"
            "from core.registry import PluginMeta, Privilege\n\n"
            f"PLUGIN = PluginMeta(name={name!r}, title={name.title()!r}, version='1.0', "
            f"api_version={api_version})\n\n"
        )
        (folder / f"{module}.py").write_text(header + textwrap.dedent(body))
        importlib.invalidate_caches()
        written.append(module)
        return {name: module}

    yield write
    for module in written:
        sys.modules.pop(module, None)


def test_a_plugin_written_for_a_newer_hook_api_is_refused_naming_it_and_both_versions(
    make_app, write_plugin
):
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules=write_plugin("tomorrow", api_version=HOOK_API_VERSION + 1))
    assert str(err.value) == (
        f"cannot start: plugin 'tomorrow' needs hook API version {HOOK_API_VERSION + 1}, "
        f"but this Billhive provides version {HOOK_API_VERSION}; upgrade Billhive"
    )


def test_a_plugin_written_for_the_current_api_loads(make_app, write_plugin):
    app = make_app(plugins=[], modules=write_plugin("today", api_version=HOOK_API_VERSION))
    assert "today" in app.extensions["billhive"].host.plugins


OLD_STYLE = """
CALLS = []

@hookimpl
def account_created(account):
    CALLS.append(account.name)

@hookimpl
def charges_for_period(account, period):
    return []
"""


def test_implementing_a_deprecated_hook_warns_naming_the_plugin_and_the_hook(
    make_app, write_plugin, monkeypatch, caplog
):
    monkeypatch.setitem(hookspecs.DEPRECATED, "account_created", "since API 2: use account_changed")
    modules = write_plugin("oldstyle", OLD_STYLE)
    with pytest.warns(hookspecs.HookDeprecationWarning) as record:
        app = make_app(plugins=[], modules=modules)
    messages = [str(w.message) for w in record if w.category is hookspecs.HookDeprecationWarning]
    assert messages == [
        "plugin 'oldstyle': hook 'account_created' is deprecated (since API 2: use account_changed)"
    ]
    logged = [r for r in caplog.records if r.name == "billhive.plugins"]
    assert [r.getMessage() for r in logged] == messages and logged[0].levelname == "WARNING"
    # deprecated is not removed: the hook is still called
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        host.set_enabled("oldstyle", True)
        world.add_account(world.provider, "Still called")
    assert host.get("oldstyle").module.CALLS == ["Still called"]


def test_naming_a_deprecated_argument_warns_but_leaving_it_out_does_not(
    make_app, write_plugin, monkeypatch, recwarn
):
    monkeypatch.setitem(
        hookspecs.DEPRECATED, "charges_for_period(period)", "since API 2: use billing_period"
    )
    with pytest.warns(hookspecs.HookDeprecationWarning, match="argument 'period' of hook "
                      "'charges_for_period' is deprecated") as record:  # fmt: skip
        make_app(plugins=[], modules=write_plugin("oldcharges", OLD_STYLE))
    assert any("plugin 'oldcharges'" in str(w.message) for w in record)

    recwarn.clear()
    modern = """
    @hookimpl
    def charges_for_period(account):
        return []
    """
    make_app(plugins=[], modules=write_plugin("newcharges", modern))
    assert not [w for w in recwarn if issubclass(w.category, hookspecs.HookDeprecationWarning)]


def test_a_misspelt_hook_is_refused_by_name_instead_of_being_ignored(make_app, write_plugin):
    typo = """
    @hookimpl
    def register_privilege():
        return [Privilege("typo.view", "Typo", "Typo")]
    """
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules=write_plugin("typo", typo))
    assert "plugin 'typo' implements 'register_privilege', which this Billhive" in str(err.value)
    assert f"(hook API {HOOK_API_VERSION}) does not define" in str(err.value)


def test_a_hook_argument_the_spec_does_not_have_is_refused_by_plugin_name(make_app, write_plugin):
    wrong = """
    @hookimpl
    def charges_for_period(customer, period):
        return []
    """
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules=write_plugin("wrongarg", wrong))
    assert "plugin 'wrongarg'" in str(err.value) and "customer" in str(err.value)


def test_a_hook_newer_than_the_declared_api_version_is_logged(
    make_app, write_plugin, monkeypatch, caplog
):
    monkeypatch.setattr(
        hookspecs.register_privileges, "__doc__", "Privileges.\n\n    Since API 2.\n    "
    )
    body = """
    @hookimpl
    def register_privileges():
        return []
    """
    make_app(plugins=[], modules=write_plugin("laggard", body, api_version=1))
    assert any(
        "plugin 'laggard' implements hook 'register_privileges' (since API 2) but declares "
        "api_version=1" in r.getMessage()
        for r in caplog.records
    )


# -- tracing ---------------------------------------------------------------------------------


def test_trace_hooks_logs_each_call_with_its_plugins_and_timing(make_app, monkeypatch, caplog):
    monkeypatch.setenv("BILLHIVE_TRACE_HOOKS", "1")
    caplog.set_level(logging.WARNING, logger="billhive.hooks")
    app = make_app(plugins=[], modules={"notes": "tests.plugins.notes"})
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        host.set_enabled("notes", True)
        caplog.clear()
        world.add_account(world.provider, "Traced")
        host.call("invoice_finalized", invoice="INV-1")

    lines = [r.getMessage() for r in caplog.records if r.name == "billhive.hooks"]
    assert "hook account_created -> [notes] args=['account', 'actor']" in lines
    # the core implements invoice_finalized too (the connectors' push): it is traced with notes
    assert "hook invoice_finalized -> [notes, core] args=['invoice']" in lines
    done = [
        line for line in lines if line.startswith("hook invoice_finalized [notes, core] done in")
    ]
    assert len(done) == 1 and re.fullmatch(r".* done in \d+\.\d\d ms", done[0])


@pytest.mark.billhive_new_app
def test_trace_hooks_times_each_plugins_declarations_at_start_up(make_app, monkeypatch, caplog):
    monkeypatch.setenv("BILLHIVE_TRACE_HOOKS", "1")
    caplog.set_level(logging.WARNING, logger="billhive.hooks")
    make_app(plugins=[], modules={"notes": "tests.plugins.notes"})
    lines = [r.getMessage() for r in caplog.records if r.name == "billhive.hooks"]
    for hook, count in [("register_privileges", 1), ("register_invoice_formats", 1),
                        ("register_blueprints", 1), ("register_menu_items", 1)]:  # fmt: skip
        assert any(
            re.fullmatch(rf"hook {hook} \[notes\] done in \d+\.\d\d ms, {count} declared", line)
            for line in lines
        ), f"{hook} of notes not traced"
    assert any(line.startswith("hook register_privileges [core] done in") for line in lines)


def test_trace_hooks_shows_a_raising_hook_and_leaves_out_disabled_plugins(
    make_app, write_plugin, monkeypatch, caplog
):
    monkeypatch.setenv("BILLHIVE_TRACE_HOOKS", "1")
    caplog.set_level(logging.WARNING, logger="billhive.hooks")
    failing = """
    @hookimpl
    def invoice_finalized(invoice):
        raise RuntimeError("push failed")
    """
    modules = {"notes": "tests.plugins.notes", **write_plugin("failing", failing)}
    app = make_app(plugins=[], modules=modules)
    host = app.extensions["billhive"].host
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        host.set_enabled("failing", True)
        caplog.clear()
        with pytest.raises(RuntimeError):
            host.call("invoice_finalized", invoice="INV-2")
    lines = [r.getMessage() for r in caplog.records if r.name == "billhive.hooks"]
    # notes is disabled, so only failing and the core's own implementation are called
    assert lines[0] == "hook invoice_finalized -> [failing, core] args=['invoice']"
    assert re.fullmatch(
        r"hook invoice_finalized \[failing, core\] raised RuntimeError\('push failed'\) in \d+\.\d\d ms",
        lines[1],
    )


def test_without_the_variable_nothing_is_traced(make_app, monkeypatch, caplog):
    monkeypatch.delenv("BILLHIVE_TRACE_HOOKS", raising=False)
    app = make_app(plugins=[], modules={"notes": "tests.plugins.notes"})
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        app.extensions["billhive"].host.call("invoice_finalized", invoice="INV-3")
    assert not [r for r in caplog.records if r.name == "billhive.hooks"]
