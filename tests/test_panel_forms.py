"""Panel forms as their users meet them: a mistake is reported once, beside its field, in the
words of the form (never an internal name), every problem in one pass, and nothing typed is
lost; forms offer only what can be done and say why something is not offered; values read
the same on every page (Yes/No, choice labels); a 404 says in words what was not found."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD, Fresh, issue

PLUGINS = ["reseller_accounts", "billing_units", "psa_mapping"]
RESELLER = "FT-3001.007"
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "BOTH",
    "customer_billing_cycle_day": 15,
}
INTERNAL = re.compile(r"\b(bill_cycle_day|tax_rate|role_ids|number_ids|e164|profile\.\w+)\b")


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS)


@pytest.fixture
def panel(panel):
    return lambda user: Fresh(panel(user))


@pytest.fixture
def resellers(ctx, install_license):
    install_license([RESELLER, "BH-UNITS", "BH-PSA"])
    host = ctx.extensions["billhive"].host
    for name in PLUGINS:
        host.set_enabled(name, True)
    return host


def text_of(resp) -> str:
    """What the user reads: the page's text without markup."""
    return unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)))


def error_under(resp, name: str) -> str:
    m = re.search(
        rf'<div class="field-error" id="e-{re.escape(name)}">(.*?)</div>',
        resp.get_data(as_text=True),
        re.S,
    )
    assert m, f"no message under {name}"
    return unescape(m.group(1))


def summary(resp) -> str:
    m = re.search(r'<div class="flash error" role="alert">(.*?)</div>', resp.get_data(as_text=True))
    assert m, "no error summary"
    return unescape(m.group(1))


# -- the shared helper -------------------------------------------------------------------------


def test_messages_lose_internal_names_and_are_said_once():
    from core.errors import Conflict, ValidationFailed
    from core.panel.forms import form_errors

    conflict = Conflict("e164: number +442079460000 already exists", {"e164": ["already exists"]})
    errors = form_errors(conflict, {"e164": "Number"})
    assert dict(errors) == {"e164": "number +442079460000 already exists"}
    assert errors.summary() == [("Number", "number +442079460000 already exists")]

    bad = ValidationFailed(
        "invalid input",
        {
            "bill_cycle_day": ["Bill cycle day must be a whole number from 1 to 28"],
            "tax_rate": ["tax_rate must be a percentage from 0 to 100"],
            "profile.customer_billing_cycle_day": ["must be a whole number from 1 to 28"] * 2,
            "number_ids": ["number 7 is not a phone number of account 'X'"],
        },
    )
    errors = form_errors(bad, {"bill_cycle_day": "Bill cycle day", "tax_rate": "Tax rate"})
    assert errors["bill_cycle_day"] == "must be a whole number from 1 to 28"
    assert errors["tax_rate"] == "must be a percentage from 0 to 100"
    assert errors["profile.customer_billing_cycle_day"] == "must be a whole number from 1 to 28"
    labels = dict(errors.summary())
    # no label declared: still words, never the internal name
    assert "Customer billing cycle day" in labels and "Numbers" in labels
    assert not INTERNAL.search(" ".join(f"{k} {v}" for k, v in errors.summary()))
    # an error that names no field is the summary's
    assert dict(form_errors(Conflict("the invoice is already paid"))) == {
        "_": "the invoice is already paid"
    }


# -- never retype ------------------------------------------------------------------------------


def test_add_user_reports_every_problem_at_once_and_keeps_the_ticked_roles(world, panel):
    from core.models import Role, User

    roles = list(Role.select().where(Role.account == world.customer_a).order_by(Role.id))
    ticked = [str(roles[0].id), str(roles[-1].id)]
    resp = panel(world.operator).post(
        f"/accounts/{world.customer_a.id}/users",
        data={"email": "not-an-address", "name": "Nina", "password": "short", "role_ids": ticked},
    )
    assert resp.status_code == 422
    assert "E-mail:" in summary(resp) and "Password:" in summary(resp)
    assert error_under(resp, "email") and error_under(resp, "password")
    page = resp.get_data(as_text=True)
    for rid in ticked:  # the ticked roles are still ticked
        assert re.search(rf'name="role_ids" value="{rid}" checked', page), rid
    assert page.count('name="role_ids"') == len(roles)
    assert 'value="not-an-address"' in page and 'value="Nina"' in page
    assert 'value="short"' not in page  # a password is never sent back
    assert not INTERNAL.search(summary(resp))
    assert User.get_or_none(User.name == "Nina") is None


def test_a_failed_login_keeps_the_email(world, ctx):
    resp = ctx.test_client().post("/login", data={"email": "a@example.com", "password": "wrong"})
    assert resp.status_code == 401
    page = resp.get_data(as_text=True)
    assert 'value="a@example.com"' in page and "wrong" not in page.split("<form")[1]


def test_a_refused_licence_stays_in_the_box(world, panel, license_keys):
    text = issue(license_keys, [RESELLER]).replace("Test Licensee", "Test Licensee2")
    resp = panel(world.operator).post("/license", data={"license_text": text})
    assert resp.status_code == 422
    assert "tampered" in text_of(resp) or "signature" in text_of(resp)
    assert unescape(resp.get_data(as_text=True)).count(text) == 1  # in the textarea


def test_the_psa_keys_stay_after_a_refused_save_and_are_never_read_back(world, panel, resellers):
    url = f"/accounts/{world.provider.id}/psa/connection"
    form = {
        "site_url": "ftp://cw.example.com",
        "company_id": "acme",
        "public_key": "pub-1234",
        "private_key": "priv-5678",
        "client_id": "client-9",
        "timeout": "10",
        "max_retries": "3",
        "backoff": "0.5",
        "action": "save",
    }
    resp = panel(world.operator).post(url, data=form)
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    for key in ("pub-1234", "priv-5678", "client-9", "acme"):
        assert f'value="{key}"' in page, key
    assert "Site URL:" in summary(resp) and "site_url" not in summary(resp)
    # a fresh page never puts a stored key into a field
    from plugins.psa_mapping.service import integration as psa

    psa.save_connection(
        None, world.provider, form | {"site_url": "https://cw.example.com", "action": None}
    )
    page = panel(world.operator).get(url).get_data(as_text=True)
    assert "priv-5678" not in page and "pub-1234" not in page


def test_a_duplicate_number_is_said_once_in_words(world, panel, resellers):
    client = panel(world.operator)
    url = f"/accounts/{world.customer_a.id}/billing/numbers"
    assert client.post(url, data={"e164": "+442079460000"}).status_code == 302
    resp = client.post(url, data={"e164": "+44 20 7946 0000"})
    assert resp.status_code in (409, 422)
    said = summary(resp)
    assert said.count("already exists") == 1 and "e164" not in said, said
    assert "Number: number +442079460000 already exists" in said


def test_the_account_form_checks_every_field_in_one_pass(world, panel, resellers):
    from core.models import Account

    resp = panel(world.operator).post(
        f"/accounts/{world.provider.id}/new",
        data={
            "type": "reseller",
            "name": "Half Written",
            "currency": "EUR",
            "bill_cycle_day": "31",
            "tax_rate": "101",
            "invoice_prefix": "R-",
            "profile.customer_invoice_type": "BOTH",
            "profile.customer_billing_cycle_day": "0",
        },
    )
    assert resp.status_code == 422
    said = summary(resp)
    for label in ("Bill cycle day:", "Tax rate:", "Billing Cycle:"):
        assert label in said, said
    assert not INTERNAL.search(said), said
    assert "1 to 28" in error_under(resp, "profile.customer_billing_cycle_day")
    page = resp.get_data(as_text=True)
    assert 'value="Half Written"' in page and 'value="R-"' in page
    assert re.search(r'<option value="BOTH" selected>', page)
    assert Account.get_or_none(Account.name == "Half Written") is None


def test_the_new_account_form_shows_what_an_untouched_form_saves(world, panel):
    from core.accounts import AccountInput
    from core.models import Account

    client = panel(world.operator)
    page = client.get(f"/accounts/{world.provider.id}/new").get_data(as_text=True)
    assert "marshmallow" not in page
    shown = {
        name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page).group(1)
        for name in ("currency", "bill_cycle_day", "tax_rate", "invoice_prefix")
    }
    assert shown["bill_cycle_day"] == str(
        AccountInput().load({"name": "x", "type": "y"})["bill_cycle_day"]
    )
    assert (
        client.post(
            f"/accounts/{world.provider.id}/new",
            data={"type": "customer", "name": "Untouched", **shown},
        ).status_code
        == 302
    )
    saved = Account.get(Account.name == "Untouched")
    assert (saved.currency, str(saved.bill_cycle_day), saved.invoice_prefix) == (
        shown["currency"],
        shown["bill_cycle_day"],
        shown["invoice_prefix"],
    )
    assert float(saved.tax_rate) == float(shown["tax_rate"])


def test_a_resellers_customer_form_shows_the_cycle_day_it_will_get(world, panel, resellers):
    from core.models import Account

    reseller = world.add_account(world.provider, "North", "reseller", profile=PROFILE)
    page = panel(world.operator).get(f"/accounts/{reseller.id}/new").get_data(as_text=True)
    fixed = re.search(r'<input id="f-bill_cycle_day-customer"[^>]*>', page).group(0)
    assert 'value="15"' in fixed and "readonly" in fixed
    assert "follows the Billing Cycle of North&#39;s Reseller Profile" in page
    resp = panel(world.operator).post(
        f"/accounts/{reseller.id}/new",
        data={"type": "customer", "name": "Fifteen", "bill_cycle_day": "15", "currency": "EUR",
              "tax_rate": "0", "invoice_prefix": "INV-"},
    )  # fmt: skip
    assert resp.status_code == 302
    assert Account.get(Account.name == "Fifteen").bill_cycle_day == 15


# -- no dead ends ------------------------------------------------------------------------------


def test_a_standard_account_offers_no_add_account(world, panel):
    client = panel(world.operator)
    page = client.get(f"/accounts/{world.customer_a.id}").get_data(as_text=True)
    assert "Add account" not in page
    resp = client.get(f"/accounts/{world.customer_a.id}/new")
    assert resp.status_code == 200
    said = text_of(resp)
    assert "No account can be added under Customer A" in said and "<select" not in said
    assert "A Standard account owns no other accounts" in said


def test_a_licence_without_the_reseller_feature_says_so(world, panel, resellers, ctx, license_keys):
    from core import license_store

    license_store.install(issue(license_keys, ["BH-UNITS"]), resellers.license_key_paths)
    client = panel(world.operator)
    page = text_of(client.get(f"/accounts/{world.provider.id}"))
    assert "Add account" in page  # Standard can still be added
    assert "Reseller accounts cannot be added here now" in page and RESELLER in page
    form = client.get(f"/accounts/{world.provider.id}/new")
    assert [o for o in re.findall(r"<option value=\"(\w+)\"", form.get_data(as_text=True))] == [
        "customer"
    ]
    assert RESELLER in text_of(form)


def test_a_reseller_without_sub_resellers_gets_no_add_reseller_but_the_reason(
    world, panel, resellers
):
    reseller = world.add_account(world.provider, "North", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@north.example")
    page = text_of(panel(admin).get("/resellers"))
    assert "Add reseller" not in page
    assert "sub-resellers are switched off" in page
    operator_page = panel(world.operator).get("/resellers").get_data(as_text=True)
    assert "/new?type=reseller" in operator_page


# -- consistent values ---------------------------------------------------------------------------


def test_overview_and_reseller_tab_say_the_same(world, panel, resellers):
    reseller = world.add_account(world.provider, "North", "reseller", profile=PROFILE)
    client = panel(world.operator)
    overview = text_of(client.get(f"/accounts/{reseller.id}"))
    tab = text_of(client.get(f"/resellers/{reseller.id}"))
    listing = text_of(client.get("/resellers"))
    for page in (overview, tab, listing):
        assert "Both (RAW & PDF)" in page and "Yes" in page
        assert "True" not in page and "BOTH" not in page
    assert "Reseller" in overview.split("Type", 1)[1][:40]


def test_a_404_says_what_was_not_found(world, panel):
    client = panel(world.user_a)
    resp = client.get(f"/accounts/{world.customer_b.id}")
    assert resp.status_code == 404
    said = text_of(resp)
    assert f"Account {world.customer_b.id} not found" in said and "not part of" in said
    assert "<title>Not found · Billhive</title>" in resp.get_data(as_text=True)
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and "There is no page at /no/such/page." in text_of(resp)


def test_the_audit_log_shows_changes_without_json_escapes(world, panel):
    from core import accounts

    accounts.update_account(None, world.customer_a, {"name": 'A <&> "Quoted"', "tax_rate": "7"})
    page = panel(world.operator).get("/audit").get_data(as_text=True)
    text = unescape(page)
    assert "\\u003c" not in page and "\\u0026" not in page and '\\"' not in text
    said = " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert 'name : Customer A → A <&> "Quoted"' in said and "tax_rate : 0 → 7" in said


def test_every_page_has_the_favicon(world, panel, ctx):
    page = panel(world.operator).get(f"/accounts/{world.provider.id}").get_data(as_text=True)
    href = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', page).group(1)
    icon = ctx.test_client().get(href)
    assert icon.status_code == 200 and icon.get_data(as_text=True).startswith("<svg")
    assert PASSWORD  # the fixture user logged in with it


def test_moments_are_shown_without_microseconds(world, panel):
    from datetime import date

    client = panel(world.operator)
    assert client.post("/billing/runs", data={"date": date.today().isoformat()}).status_code == 302
    from core.billing.models import BillRun

    for _ in range(100):  # the run finishes in the background
        if BillRun.get_by_id(1).finished_at is not None:
            break
        time.sleep(0.1)
    finished = BillRun.get_by_id(1).finished_at
    assert finished is not None and finished.microsecond  # what the database holds
    page = client.get("/billing/runs").get_data(as_text=True)
    assert finished.strftime("%Y-%m-%d %H:%M:%S UTC") in page
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", page)


def test_date_ranges_people_ask_for_read_to_included_everywhere(world, panel, resellers):
    """Statements, the activity page and the billing-unit report: "To (included)" is the
    last day shown, on each of them."""
    client = panel(world.operator)
    acc = world.customer_a.id
    pages = {
        "statements": client.get(f"/accounts/{acc}/billing/statements"),
        "activity": client.get(f"/accounts/{acc}/billing/activity"),
        "report": client.get(f"/accounts/{acc}/billing/report?start=2024-05-01&to=2024-05-31"),
    }
    for name, resp in pages.items():
        said = text_of(resp)
        assert resp.status_code == 200, name
        assert "(included)" in said and "exclusive" not in said, name
    report = pages["report"].get_data(as_text=True)
    assert 'name="to" value="2024-05-31"' in report  # the day asked for, as asked
    assert "start=2024-05-01&amp;end=2024-06-01" in report  # the CSV: the API's own end
    same = client.get(f"/accounts/{acc}/billing/report?start=2024-05-01&end=2024-06-01")
    assert 'name="to" value="2024-05-31"' in same.get_data(as_text=True)
    bad = client.get(f"/accounts/{acc}/billing/report?start=2024-05-01&to=31.05.2024")
    assert bad.status_code == 422 and "To" in text_of(bad)


def test_breadcrumbs_lead_back_up_the_tree_within_ones_own_part(world, panel, resellers):
    reseller = world.add_account(world.provider, "North", "reseller", profile=PROFILE)
    shop = world.add_account(reseller, "Corner Shop")
    trail = re.compile(r'<nav class="crumbs" aria-label="Breadcrumb">(.*?)</nav>', re.S)
    page = panel(world.operator).get(f"/accounts/{shop.id}/users").get_data(as_text=True)
    links = re.findall(r'<a href="/accounts/(\d+)">([^<]+)</a>', trail.search(page).group(1))
    assert links == [(str(world.provider.id), "Provider"), (str(reseller.id), "North")]
    # the reseller's admin sees the trail from its own account, never above it
    admin = world.add_user(reseller, "admin@north.example")
    page = panel(admin).get(f"/accounts/{shop.id}").get_data(as_text=True)
    links = re.findall(r'<a href="/accounts/(\d+)">([^<]+)</a>', trail.search(page).group(1))
    assert links == [(str(reseller.id), "North")]
    form = panel(world.operator).get(f"/accounts/{shop.id}/edit").get_data(as_text=True)
    assert "Corner Shop" in trail.search(form).group(1)


@given(
    fields=st.dictionaries(
        st.from_regex(r"[a-z]{2,8}(_[a-z]{2,8}){1,2}(\.[a-z]{2,8}_[a-z]{2,8})?", fullmatch=True),
        st.lists(
            st.sampled_from(["is required", "must be at most 5", "already exists"]),
            min_size=1,
            max_size=3,
        ),
        min_size=1,
        max_size=4,
    ),
    prefixed=st.booleans(),
)
@settings(max_examples=200, deadline=None, derandomize=True)
def test_no_internal_name_survives_and_nothing_is_said_twice(fields, prefixed):
    """Whatever fields a service names (snake_case, dotted profile paths) and however it
    words them ("x_y: ...", "x_y ..."), the form shows words, each message once per field."""
    from core.errors import ValidationFailed
    from core.panel.forms import form_errors

    errors = {k: [f"{k}: {m}" if prefixed else m for m in v] for k, v in fields.items()}
    message = "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items())
    out = form_errors(ValidationFailed(message, errors))
    assert set(out) == set(fields)
    for key, text in out.items():
        parts = text.split("; ")
        assert len(parts) == len(set(parts)) == len(set(fields[key]))
        shown = " ".join(f"{label} {msg}" for label, msg in out.summary())
        for name in fields:
            assert name not in shown and name.rsplit(".", 1)[-1] not in shown


def test_add_user_says_a_taken_email_and_a_weak_password_together(world, panel):
    from core.models import User

    before = User.select().count()
    resp = panel(world.operator).post(
        f"/accounts/{world.customer_a.id}/users",
        # long enough for the form, refused by the policy: the address itself
        data={"email": world.user_b.email, "name": "Twin", "password": world.user_b.email},
    )
    assert resp.status_code == 422
    assert "already exists" in error_under(resp, "email")
    assert error_under(resp, "password")
    assert User.select().count() == before
