"""Every hook is documented with its signature, and every hook is exercised through the host."""

from __future__ import annotations

import ast
import inspect
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import click
import pytest

from core import HOOK_API_VERSION, hookspecs
from core.billing.models import Invoice
from core.plugins import hook_since
from core.registry import Charge, InvoiceOptions, PushResult
from tests.conftest import World
from tests.plugins import notes

DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def _specs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "billhive_spec")
    }


SPECS = _specs()


def test_there_are_hooks_of_all_four_families():
    assert {
        "register_privileges",
        "register_account_types",
        "register_invoice_formats",
        "register_billing_connectors",
    } <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented_with_its_signature(name):
    text = DOCS.read_text()
    signature = f"{name}{SPECS[name]}"
    assert re.search(rf"^### `{re.escape(signature)}`$", text, re.M), (
        f"docs/hooks.md has no heading ### `{signature}`"
    )
    section = text.split(f"### `{signature}`", 1)[1].split("\n### ", 1)[0]
    assert "Since:" in section and "Returns:" in section and "```python" in section


def _section(name: str) -> str:
    text = DOCS.read_text()
    heading = f"### `{name}{SPECS[name]}`"
    assert heading in text, f"docs/hooks.md has no heading {heading}"
    return text.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_says_when_it_is_called_what_it_returns_and_since_which_api(name):
    section = _section(name)
    assert re.search(r"^- \*\*Called:\*\* \S", section, re.M), f"{name}: no **Called:**"
    assert re.search(r"^- \*\*Returns:\*\* \S", section, re.M), f"{name}: no **Returns:**"
    since = hook_since(name)  # the spec's docstring says "Since API N." exactly once
    assert 1 <= since <= HOOK_API_VERSION
    assert re.search(rf"^- \*\*Since:\*\* API {since}\b", section, re.M), (
        f"docs/hooks.md: {name} must say '- **Since:** API {since}' as its spec does"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_has_an_example_implementing_it_with_the_specs_parameters(name):
    blocks = re.findall(r"```python\n(.*?)```", _section(name), re.S)
    assert blocks, f"docs/hooks.md: {name} has no python example"
    defs = [
        node
        for block in blocks
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    assert defs, f"docs/hooks.md: the example of {name} does not define {name}()"
    example = defs[0]
    assert any(ast.unparse(d) == "hookimpl" for d in example.decorator_list), (
        f"docs/hooks.md: the example {name}() is not decorated with @hookimpl"
    )
    params = [a.arg for a in example.args.args]
    spec_params = list(SPECS[name].parameters)
    # an implementation may leave parameters out, never rename or reorder them
    assert params == [p for p in spec_params if p in params] and set(params) <= set(spec_params)
    assert not example.args.defaults, "a parameter with a default is never passed by pluggy"


def test_deprecations_name_real_hooks_and_arguments_and_are_documented():
    text = DOCS.read_text()
    for key, message in hookspecs.DEPRECATED.items():
        match = re.fullmatch(r"(\w+)(?:\((\w+)\))?", key)
        assert match and match[1] in SPECS, f"DEPRECATED[{key!r}]: no such hook"
        if match[2]:
            assert match[2] in SPECS[match[1]].parameters, f"DEPRECATED[{key!r}]: no such argument"
        since = re.match(r"since API (\d+): \S", message)
        assert since and int(since[1]) <= HOOK_API_VERSION, (
            f"DEPRECATED[{key!r}] must read 'since API N: use ...', got {message!r}"
        )
        assert "**Deprecated:**" in _section(match[1]), f"docs/hooks.md: {key} not marked"
    assert "BILLHIVE_TRACE_HOOKS" in text and "plugin-api-policy.md" in text


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_test_plugin_implements_every_hook_with_the_specs_parameters(name):
    impl = getattr(notes, name)
    assert list(inspect.signature(impl).parameters) == list(SPECS[name].parameters)


def test_every_hook_is_called_through_the_host(make_app):
    app = make_app(plugins=[], modules={"notes": "tests.plugins.notes"})
    host = app.extensions["billhive"].host
    exercised: set[str] = set()
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        host.set_enabled("notes", True)
        notes.CALLS.clear()

        # declarations, merged by the host
        assert host.privileges()["notes.view"].levels == ("provider", "reseller")
        exercised.add("register_privileges")
        assert host.account_types()["agency"].profile_schema is notes.AgencyProfile
        exercised.add("register_account_types")
        assert host.invoice_formats()["TXT"].render({"number": "7"}) == b"invoice 7"
        exercised.add("register_invoice_formats")
        connector = host.billing_connectors()["notebook"]
        assert connector.test({"url": "http://x"}) == "reached http://x"
        item = connector.items(SimpleNamespace(invoice=SimpleNamespace(id=7)))[0]
        assert connector.push({}, item) == PushResult("created", 1, "noted note:7")
        exercised.add("register_billing_connectors")
        assert notes.Note in host.models(only_enabled=True)
        notes.Note.create(text="table exists")
        exercised.add("register_models")
        assert ("notes", notes.blueprint) in host.blueprints()
        exercised.add("register_blueprints")
        assert host.catalog.default_roles["provider:note_taker"].plugin == "notes"
        exercised.add("register_default_roles")
        assert "Notes" in [i.label for i in host.menu_items("main")]
        exercised.add("register_menu_items")

        # behaviour hooks, called by keyword
        commands = host.call("register_commands")
        assert any(
            isinstance(c, click.Command) and c.name == "notes-count" for cs in commands for c in cs
        )
        exercised.add("register_commands")
        period = (date(2026, 1, 1), date(2026, 2, 1))
        charges = host.call("charges_for_period", account=world.customer_a, period=period)
        assert charges == [[Charge("Note keeping", 2, notes.Decimal("1.50"), unit="note")]]
        exercised.add("charges_for_period")
        created = world.customer_a.created_at.date()
        assert host.call("charges_since", account=world.customer_a) == [created]
        exercised.add("charges_since")
        account = world.add_account(world.provider, "Evented")
        assert ("account_created", {"account": account, "actor": None}) in notes.CALLS
        exercised.add("account_created")
        from core import accounts

        accounts.update_account(None, account, {"name": "Evented again"})
        ((hook, kwargs),) = [c for c in notes.CALLS if c[0] == "account_updated"]
        assert kwargs["account"].name == "Evented again" and kwargs["actor"] is None
        assert kwargs["before"]["name"] == "Evented"
        exercised.add("account_updated")
        host.call("invoice_finalized", invoice="INV-1")
        assert ("invoice_finalized", {"invoice": "INV-1"}) in notes.CALLS
        exercised.add("invoice_finalized")
        # a dunning run calls invoice_overdue once per step (tests/test_dunning.py: the rules)
        from core.billing.invoicing import lifecycle
        from core.billing.ledger import dunning

        overdue = lifecycle.issue(
            lifecycle.create_draft(
                None, world.customer_a, world.provider, [{"description": "x", "unit_price": "5"}]
            )
        )
        Invoice.update(due_date=date(2026, 1, 1)).where(Invoice.id == overdue.id).execute()
        notes.CALLS.clear()
        dunning.run(date(2026, 1, 5))
        dunning.run(date(2026, 1, 6))
        calls = [kw for hook, kw in notes.CALLS if hook == "invoice_overdue"]
        assert [(c["invoice"].id, c["level"].code) for c in calls] == [(overdue.id, "reminder_1")]
        exercised.add("invoice_overdue")
        # the dashboard asks every enabled plugin (core.dashboard.alerts)
        from core import dashboard

        notes.CALLS.clear()
        with app.test_request_context():  # asked while the panel renders a page
            shown = dashboard.alerts(world.operator)
        assert ("dashboard_alerts", {"user": world.operator}) in notes.CALLS
        assert ("Unread notes", 1) in [(a.title, a.count) for a in shown]
        exercised.add("dashboard_alerts")
        answer = host.call(
            "invoice_options", issuer=world.provider, account=world.customer_a, period=period
        )
        assert answer == InvoiceOptions(create=True, formats=("TXT",))  # firstresult: one answer
        exercised.add("invoice_options")

    assert exercised == set(SPECS), f"not exercised: {set(SPECS) - exercised}"
