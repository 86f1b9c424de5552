"""billing_units through the REST API, the panel (test client) and a real Chromium."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def app(make_app):
    return make_app(plugins=["billing_units"])


@pytest.fixture
def units(world, install_license, ctx):
    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    from plugins.billing_units.service import units

    return units


def _limited_user(world, codes, email):
    from core import roles

    role = roles.create_role(
        None, world.customer_a, {"name": email, "description": "limited", "privileges": list(codes)}
    )
    return world.add_user(world.customer_a, email, role_code=None, roles=[role])


# -- API ---------------------------------------------------------------------------------------


def test_api_units_numbers_teams_calls_report(world, units, api):
    client = api(world.user_a)
    acc = world.customer_a.id
    bad = client.post(f"/api/v1/accounts/{acc}/phone-numbers", json={"e164": "0044 123"})
    assert bad.status_code == 422 and "e164" in bad.get_json()["errors"]
    n1 = client.post(f"/api/v1/accounts/{acc}/phone-numbers", json={"e164": "+442079460001"})
    assert n1.status_code == 201, n1.get_json()
    n1 = n1.get_json()["id"]
    team = client.post(
        f"/api/v1/accounts/{acc}/teams", json={"name": "Agents", "user_ids": [world.user_a.id]}
    )
    assert team.status_code == 201, team.get_json()
    empty = client.post(f"/api/v1/accounts/{acc}/billing-units", json={"name": " "})
    assert empty.status_code == 422 and empty.get_json()["errors"] == {
        "name": ["must not be empty"]
    }
    unit = client.post(
        f"/api/v1/accounts/{acc}/billing-units",
        json={"name": "Sales", "team_ids": [team.get_json()["id"]], "number_ids": [n1]},
    )
    assert unit.status_code == 201, unit.get_json()
    body = unit.get_json()
    assert body["numbers"] == ["+442079460001"] and body["effective_user_ids"] == [world.user_a.id]
    clash = client.post(
        f"/api/v1/accounts/{acc}/billing-units", json={"name": "Other", "number_ids": [n1]}
    )
    assert clash.status_code == 409
    assert (
        clash.get_json()["message"]
        == "number +442079460001 is already assigned to billing unit 'Sales'"
    )
    calls = {
        "records": [
            {
                "external_id": "a",
                "number": "+442079460001",
                "started_at": "2024-05-02T10:00:00",
                "duration_seconds": 30,
                "cost": "0.25",
            },
            {
                "external_id": "b",
                "number": "+442079460001",
                "started_at": "2024-05-03T10:00:00",
                "duration_seconds": 90,
                "cost": "0.75",
            },
        ]
    }
    first = client.post(f"/api/v1/accounts/{acc}/call-records", json=calls)
    assert first.status_code == 200 and first.get_json()["created"] == 2
    again = client.post(f"/api/v1/accounts/{acc}/call-records", json=calls)
    assert again.get_json() == {"received": 2, "created": 0, "duplicates": 2}
    report = client.get(
        f"/api/v1/accounts/{acc}/billing-units/report?start=2024-05-01&end=2024-06-01"
    )
    assert report.status_code == 200, report.get_json()
    body_report = report.get_json()
    rows = {r["unit"]: r for r in body_report["units"]}
    # nothing is invoiced yet: the invoiced figures are 0, the calls are in the estimate
    assert rows["Sales"]["usage"] == 0 and body_report["totals"]["total"] == 0
    pending = {r["unit"]: r["total"] for r in body_report["not_invoiced"]["units"]}
    assert pending == {"Sales": 100, "Unassigned": 0}
    csv = client.get(
        f"/api/v1/accounts/{acc}/billing-units/report.csv?start=2024-05-01&end=2024-06-01"
    )
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert "Sales,0,0,0.00,0.00,0.00,0.00,0.00,0.00,EUR" in csv.get_data(as_text=True)
    uid = body["id"]
    patched = client.patch(f"/api/v1/billing-units/{uid}", json={"number_ids": []})
    assert patched.status_code == 200 and patched.get_json()["numbers"] == []
    assert client.delete(f"/api/v1/billing-units/{uid}").status_code == 204
    bad_period = client.get(f"/api/v1/accounts/{acc}/billing-units/report?start=2024-13-01")
    assert bad_period.status_code == 422


def test_api_outside_subtree_is_404_and_viewer_gets_403_on_change(world, units, api):
    unit_b = units.create_unit(world.user_b, world.customer_b, {"name": "B"})
    client = api(world.user_a)
    assert client.get(f"/api/v1/billing-units/{unit_b.id}").status_code == 404
    assert client.patch(f"/api/v1/billing-units/{unit_b.id}", json={"name": "x"}).status_code == 404
    assert client.get(f"/api/v1/accounts/{world.customer_b.id}/billing-units").status_code == 404
    unit_a = units.create_unit(world.user_a, world.customer_a, {"name": "A"})
    viewer = api(_limited_user(world, ["billing_units.view"], "v@example.com"))
    assert viewer.get(f"/api/v1/accounts/{world.customer_a.id}/billing-units").status_code == 200
    assert (
        viewer.get(f"/api/v1/accounts/{world.customer_a.id}/billing-units/report").status_code
        == 200
    )
    resp = viewer.patch(f"/api/v1/billing-units/{unit_a.id}", json={"name": "B"})
    assert resp.status_code == 403 and "billing_units.edit" in resp.get_json()["message"]
    assert viewer.delete(f"/api/v1/billing-units/{unit_a.id}").status_code == 403
    assert (
        viewer.post(
            f"/api/v1/accounts/{world.customer_a.id}/billing-units", json={"name": "C"}
        ).status_code
        == 403
    )


def test_resources_are_in_the_openapi_document(world, units, ctx):
    spec = ctx.test_client().get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    for path in [
        "/api/v1/accounts/{account_id}/billing-units",
        "/api/v1/billing-units/{unit_id}",
        "/api/v1/accounts/{account_id}/phone-numbers",
        "/api/v1/accounts/{account_id}/teams",
        "/api/v1/accounts/{account_id}/call-records",
        "/api/v1/accounts/{account_id}/billing-units/report",
        "/api/v1/accounts/{account_id}/billing-units/report.csv",
    ]:
        assert path in paths, sorted(paths)


def test_disabled_plugin_answers_404(world, units, api, ctx):
    client = api(world.user_a)
    url = f"/api/v1/accounts/{world.customer_a.id}/billing-units"
    assert client.get(url).status_code == 200
    ctx.extensions["billhive"].host.set_enabled("billing_units", False)
    assert client.get(url).status_code == 404


# -- panel (test client) -----------------------------------------------------------------------


def test_panel_units_table_form_and_report(world, units, panel):
    n1 = units.create_number(world.user_a, world.customer_a, {"e164": "+442079460001"})
    n2 = units.create_number(world.user_a, world.customer_a, {"e164": "+442079460002"})
    client = panel(world.user_a)
    acc = world.customer_a.id
    page = client.get(f"/accounts/{acc}").get_data(as_text=True)
    assert f'href="/accounts/{acc}/billing"' in page  # the Billing tab
    billing = client.get(f"/accounts/{acc}/billing/my-account").get_data(as_text=True)
    assert (
        f'href="/accounts/{acc}/billing/units" class="" data-sub="billing_units.units"' in billing
    )
    resp = client.post(
        f"/accounts/{acc}/billing/units/new",
        data={"name": "Sales", "user_ids": [str(world.user_a.id)], "number_ids": [str(n1.id)]},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    table = client.get(f"/accounts/{acc}/billing/units").get_data(as_text=True)
    assert "<th>Name</th><th>Users</th><th>Numbers</th>" in table
    assert "Sales" in table and "+442079460001" in table and "a@example.com" in table
    form = client.get(f"/accounts/{acc}/billing/units/new").get_data(as_text=True)
    assert "+442079460002" in form and "+442079460001" not in form  # available numbers only
    dup = client.post(
        f"/accounts/{acc}/billing/units/new", data={"name": "Other", "number_ids": [str(n1.id)]}
    )
    assert dup.status_code == 422
    assert "already assigned to billing unit &#39;Sales&#39;" in dup.get_data(as_text=True)
    empty = client.post(f"/accounts/{acc}/billing/units/new", data={"name": ""})
    assert empty.status_code == 422 and "must not be empty" in empty.get_data(as_text=True)
    report = client.get(f"/accounts/{acc}/billing/report?start=2024-05-01&end=2024-06-01")
    assert report.status_code == 200
    text = report.get_data(as_text=True)
    assert "<svg" in text and "Unassigned" in text
    assert client.get(f"/accounts/{acc}/billing/report.csv").mimetype == "text/csv"
    assert n2.id


def _subtab_labels(html: str) -> list[str]:
    row = html.split('class="tabs billing-subtabs"', 1)[1].split("</div>", 1)[0]
    return re.findall(r">([^<]+)</a>", row)


def test_panel_outsider_gets_404(world, units, panel):
    unit_b = units.create_unit(world.user_b, world.customer_b, {"name": "B"})
    client = panel(world.user_a)
    b = world.customer_b.id
    for url in (f"/accounts/{b}/billing", f"/accounts/{b}/billing/units",
                f"/accounts/{b}/billing/units/{unit_b.id}", f"/accounts/{b}/billing/report"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    assert client.post(f"/accounts/{b}/billing/units/{unit_b.id}/delete").status_code == 404
    assert [u.name for u in units.units_of(world.customer_b)] == ["B"]


def test_view_billing_unit_alone_opens_the_billing_page_read_only(world, units, panel):
    """The document: "to access the Billing units tab ... one or both of the View Billing
    unit and Edit Billing unit privileges": no Edit Billing needed, and View alone shows no
    edit control and changes nothing, whatever is posted."""
    acc = world.customer_a
    number = units.create_number(None, acc, {"e164": "+442079460001"})
    team = units.create_team(None, acc, {"name": "Night", "user_ids": [world.user_a.id]})
    unit = units.create_unit(None, acc, {"name": "Sales", "number_ids": [number.id]})
    viewer = panel(_limited_user(world, ["billing_units.view"], "v@example.com"))
    overview = viewer.get(f"/accounts/{acc.id}").get_data(as_text=True)
    assert f'href="/accounts/{acc.id}/billing"' in overview  # the Billing tab is there
    opened = viewer.get(f"/accounts/{acc.id}/billing")
    assert opened.status_code == 302 and opened.location.endswith(
        f"/accounts/{acc.id}/billing/units"
    )
    page = viewer.get(f"/accounts/{acc.id}/billing/units").get_data(as_text=True)
    # the core's sub-tabs need Edit Billing; the plugin's two are the unit privileges'
    assert _subtab_labels(page) == ["Billing units", "Call recording"]
    assert "Sales" in page and "+442079460001" in page
    assert "Add billing unit" not in page and ">Edit<" not in page and ">Delete<" not in page
    assert "Read-only" in page
    for url in ("teams", "numbers", "report", "recording"):
        html = viewer.get(f"/accounts/{acc.id}/billing/{url}").get_data(as_text=True)
        main = html.split("<main", 1)[1].replace('<button type="submit">Show</button>', "")
        assert "<button" not in main and 'method="post"' not in main, url
    assert viewer.get(f"/accounts/{acc.id}/billing/my-account").status_code == 403
    assert viewer.get(f"/accounts/{acc.id}/billing/units/new").status_code == 403
    assert viewer.get(f"/accounts/{acc.id}/billing/units/{unit.id}").status_code == 403
    posts = {
        f"/accounts/{acc.id}/billing/units/new": {"name": "Mine"},
        f"/accounts/{acc.id}/billing/units/{unit.id}": {"name": "Renamed"},
        f"/accounts/{acc.id}/billing/units/{unit.id}/delete": {},
        f"/accounts/{acc.id}/billing/teams": {"name": "New team"},
        f"/accounts/{acc.id}/billing/numbers": {"e164": "+442079460002"},
        f"/accounts/{acc.id}/billing/report": {"seat_price": "9"},
        f"/accounts/{acc.id}/billing/recording": {"days": "30"},
    }
    posts[f"/accounts/{acc.id}/billing/teams?x=1"] = {"team_id": str(team.id), "action": "delete"}
    posts[f"/accounts/{acc.id}/billing/numbers?x=1"] = {"number_id": str(number.id)}
    for url, data in posts.items():
        assert viewer.post(url, data=data).status_code == 403, url
    assert [u.name for u in units.units_of(acc)] == ["Sales"]
    assert [t.name for t in units.teams_of(acc)] == ["Night"]
    assert [n.e164 for n in units.numbers_of(acc)] == ["+442079460001"]
    assert units.settings_for(acc).seat_price == 0


def test_edit_billing_unit_alone_edits_and_edit_billing_alone_sees_no_units(world, units, panel):
    acc = world.customer_a
    editor = panel(_limited_user(world, ["billing_units.edit"], "editor@example.com"))
    assert editor.get(f"/accounts/{acc.id}/billing").location.endswith("/billing/units")
    page = editor.get(f"/accounts/{acc.id}/billing/units").get_data(as_text=True)
    assert "Add billing unit" in page and "Read-only" not in page
    resp = editor.post(f"/accounts/{acc.id}/billing/units/new", data={"name": "Sales"})
    assert resp.status_code == 302
    assert [u.name for u in units.units_of(acc)] == ["Sales"]
    billing_only = panel(_limited_user(world, ["billing.edit"], "billing-only@example.com"))
    my_account = billing_only.get(f"/accounts/{acc.id}/billing/my-account").get_data(as_text=True)
    assert "Billing units" not in _subtab_labels(my_account)
    assert billing_only.get(f"/accounts/{acc.id}/billing/units").status_code == 403
    nothing = panel(_limited_user(world, ["accounts.view"], "nothing@example.com"))
    assert f'href="/accounts/{acc.id}/billing"' not in nothing.get(f"/accounts/{acc.id}").get_data(
        as_text=True
    )
    assert nothing.get(f"/accounts/{acc.id}/billing").status_code == 403


def test_full_access_sees_the_documents_billing_sub_tabs_in_its_order(world, units, panel):
    """The document's list of the Billing page, in its order (other sub-tabs may sit between:
    Dunning is not in the document)."""
    html = (
        panel(world.user_a)
        .get(f"/accounts/{world.customer_a.id}/billing/units")
        .get_data(as_text=True)
    )
    document = ["My account", "Statements", "Payment settings", "Billing units",
                "Prepaid invoices", "Payment methods", "Transactions", "Activity reports",
                "Call recording"]  # fmt: skip
    assert [label for label in _subtab_labels(html) if label in document] == document
    assert html.count("<h2>Billing</h2>") == 1


# -- browser -----------------------------------------------------------------------------------


@pytest.mark.browser
def test_browser_add_billing_unit_with_manage_panels(world, units, live_server, page):
    acc = world.customer_a
    world.add_user(acc, "agent@example.com", role_code=None)
    member = world.add_user(acc, "member@example.com", role_code=None)
    units.create_team(None, acc, {"name": "Night shift", "user_ids": [member.id]})
    units.create_number(None, acc, {"e164": "+442079460001"})
    units.create_number(None, acc, {"e164": "+442079460002"})

    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.user_a.email)
    page.fill("input[name=password]", "secret-pass-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server}/accounts/{acc.id}")
    page.click(".tabs >> text='Billing'")
    page.click(".billing-subtabs >> text='Billing units'")
    page.click("text=Add billing unit")
    page.fill("#f-name", "Sales")

    page.click("#manage-users")
    dialog = page.locator("#user-panel")
    dialog.wait_for(state="visible")
    dialog.get_by_label(re.compile("agent@example.com")).check()
    dialog.get_by_label("Night shift").check()
    page.click("#assign-users")
    dialog.wait_for(state="hidden")
    assigned = page.locator("#assigned-users")
    assert "agent@example.com" in assigned.inner_text()
    assert "team Night shift" in assigned.inner_text()

    page.click("#manage-numbers")
    numbers = page.locator("#number-panel")
    numbers.wait_for(state="visible")
    numbers.get_by_label(re.compile(r"\+442079460001")).check()
    numbers.get_by_label(re.compile(r"\+442079460002")).check()
    page.click("#assign-numbers")
    assert "+442079460002" in page.locator("#assigned-numbers").inner_text()

    page.click("#save-unit")
    row = page.locator("#units-table tr[data-unit=Sales]")
    row.wait_for()
    text = row.inner_text()
    assert "agent@example.com" in text and "member@example.com" in text  # team members count
    assert "+442079460001" in text and "+442079460002" in text
    assert "team Night shift" in text
