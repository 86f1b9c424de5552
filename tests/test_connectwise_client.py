"""ConnectWise Manage client (plugins/psa_mapping/service/connectwise.py) against the fake server."""

from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal

import pytest
import requests

from plugins.psa_mapping.service.connectwise import (
    ConnectWiseClient,
    ConnectWiseError,
    ConnectWiseSettings,
    addition_marker,
    dumps,
    parse_marker,
    with_marker,
)
from tests.fakes.connectwise import FakeConnectWise, filter_by_conditions

TIMEOUT = 0.3  # seconds per HTTP call in these tests


@pytest.fixture(autouse=True)
def outbound_allows_the_fake(monkeypatch):
    """No app here: the operator's outbound settings come from the environment. The fake
    listens on http://127.0.0.1, which only the allowlist lets through."""
    monkeypatch.setenv("BILLHIVE_OUTBOUND_ALLOW_HTTP", "1")
    monkeypatch.setenv("BILLHIVE_OUTBOUND_ALLOWLIST", "127.0.0.1")


@pytest.fixture
def fake():
    with FakeConnectWise() as server:
        yield server


@pytest.fixture
def world(fake):
    """A company with an agreement and two catalog items."""
    acme = fake.add_company("Acme Corp", "AcmeCorp")
    other = fake.add_company("Other Ltd", "OtherLtd")
    agreement = fake.add_agreement(acme["id"], "Acme Managed Services")
    fake.add_agreement(other["id"], "Other MSA")
    fake.add_catalog_item("M365-BP", "Microsoft 365 Business Premium", Decimal("22.00"))
    fake.add_catalog_item("BACKUP-GB", "Cloud Backup per GB", Decimal("0.05"))
    return {"company": acme, "other": other, "agreement": agreement}


def client_for(fake: FakeConnectWise, **overrides) -> ConnectWiseClient:
    page_size = overrides.pop("page_size", 1000)
    values = {"timeout": TIMEOUT, "max_retries": 2, "backoff": 0.01, **overrides}
    settings = fake.settings(**values)
    return ConnectWiseClient(settings, page_size=page_size)


# ------------------------------------------------------------------ connection


def test_connection_ok_sends_basic_auth_and_client_id(fake):
    with client_for(fake) as client:
        info = client.test_connection()
    assert info["version"] == fake.version
    assert info["company_id"] == fake.company_id
    assert info["api_url"] == fake.url + "/v4_6_release/apis/3.0/"
    (request,) = fake.requests_log
    assert request.path == "/v4_6_release/apis/3.0/system/info"
    assert request.auth_user == f"{fake.company_id}+{fake.public_key}"
    assert request.headers["clientId"] == fake.client_id
    assert request.status == 200


def test_bad_credentials_are_an_auth_error_and_not_retried(fake):
    client = client_for(fake, private_key="wrong-private-key")
    with pytest.raises(ConnectWiseError) as caught:
        client.test_connection()
    err = caught.value
    assert err.kind == "auth"
    assert err.status == 401
    assert str(err) == (
        "ConnectWise refused the credentials (401): check company id, public and private key"
    )
    assert len(fake.requests_log) == 1


def test_missing_client_id_is_reported(fake):
    client = client_for(fake, client_id="")
    with pytest.raises(ConnectWiseError) as caught:
        client.test_connection()
    assert caught.value.kind == "bad_request"
    assert caught.value.status == 400
    assert "Client ID" in str(caught.value)
    assert "clientId" not in fake.requests_log[0].headers


def test_fake_rejects_missing_client_id_with_cw_error_json(fake):
    resp = requests.get(
        fake.api_url + "system/info",
        auth=(f"{fake.company_id}+{fake.public_key}", fake.private_key),
        timeout=2,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) >= {"code", "message"}
    assert "clientId" in body["message"]


def test_unreachable_server_is_a_connection_error():
    with FakeConnectWise() as server:
        settings = server.settings(timeout=TIMEOUT, max_retries=1, backoff=0.01)
    assert not server.running
    with pytest.raises(ConnectWiseError) as caught:
        ConnectWiseClient(settings).test_connection()
    assert caught.value.kind == "connection"
    assert caught.value.attempts == 2
    assert str(caught.value) == "The site URL cannot be reached or is not allowed"


def test_non_json_answer_points_at_the_site_url(fake):
    """A web page instead of the API (site URL of the login page, a proxy...)."""
    session = requests.Session()

    def html_page(method, url, **kwargs):
        resp = requests.Response()
        resp.status_code = 200
        resp._content = b"<html>Login</html>"
        return resp

    session.request = html_page  # type: ignore[method-assign]
    with pytest.raises(ConnectWiseError) as caught:
        ConnectWiseClient(fake.settings(), session=session).test_connection()
    assert caught.value.kind == "connection"
    # what answered is never echoed: the one message of the outbound guard
    assert str(caught.value) == "The site URL cannot be reached or is not allowed"


# ------------------------------------------------------------- lists & paging


def test_find_companies_follows_paging(fake):
    for n in range(1, 6):
        fake.add_company(f"Acme {n}", f"Acme{n}")
    fake.add_company("Zeta", "Zeta")
    fake.add_company("Acme Gone", "AcmeGone", deletedFlag=True)
    client = client_for(fake, page_size=2)

    names = [c["name"] for c in client.find_companies("acme")]

    assert names == ["Acme 1", "Acme 2", "Acme 3", "Acme 4", "Acme 5"]
    pages = fake.requests_to("company/companies")
    assert [r.query["page"] for r in pages] == ["1", "2", "3"]
    assert all(r.query["pageSize"] == "2" for r in pages)
    assert pages[0].query["conditions"] == 'name like "acme%" and deletedFlag=false'
    assert 'rel="next"' in requests.get(
        fake.api_url + "company/companies?pageSize=2",
        auth=(f"{fake.company_id}+{fake.public_key}", fake.private_key),
        headers={"clientId": fake.client_id},
        timeout=2,
    ).headers.get("Link", "")
    assert len(client.find_companies()) == 6


def test_get_company_and_not_found(fake, world):
    client = client_for(fake)
    assert client.get_company(world["company"]["id"])["name"] == "Acme Corp"
    with pytest.raises(ConnectWiseError) as caught:
        client.get_company(999999)
    assert caught.value.kind == "not_found"
    assert caught.value.status == 404
    assert len(fake.requests_to("company/companies/999999")) == 1  # 404 is not retried


def test_catalog_search_matches_identifier_or_description(fake, world):
    client = client_for(fake)
    assert [i["identifier"] for i in client.catalog_items("365")] == ["M365-BP"]
    assert [i["identifier"] for i in client.catalog_items("backup")] == ["BACKUP-GB"]
    assert [i["identifier"] for i in client.catalog_items("gb")] == ["BACKUP-GB"]
    assert len(client.catalog_items()) == 2
    assert client.catalog_items("nothing-like-this") == []
    item = client.catalog_item("m365-bp")
    assert item["identifier"] == "M365-BP"
    assert item["price"] == Decimal("22.00")


def test_agreements_are_per_company(fake, world):
    fake.add_agreement(world["company"]["id"], "Old one", cancelledFlag=True)
    client = client_for(fake)
    assert [a["name"] for a in client.agreements(world["company"]["id"])] == [
        "Acme Managed Services"
    ]
    every = client.agreements(world["company"]["id"], include_cancelled=True)
    assert [a["name"] for a in every] == ["Acme Managed Services", "Old one"]
    assert fake.requests_to("finance/agreements")[0].query["conditions"] == (
        f"company/id={world['company']['id']} and cancelledFlag=false"
    )


# -------------------------------------------------------------------- upserts


def test_upsert_creates_then_updates_then_is_unchanged(fake, world):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)

    outcome, created = client.upsert_addition(
        agreement_id,
        "M365-BP",
        Decimal("12.5"),
        "cust7-map3",
        level=None,
        unit_price=None,
        effective_date=date(2025, 3, 1),
    )
    assert outcome == "created"
    assert created["quantity"] == Decimal("12.5")
    assert created["product"]["identifier"] == "M365-BP"
    assert created["effectiveDate"] == "2025-03-01T00:00:00Z"
    assert created["unitPrice"] == Decimal("22.00")  # catalog price when none given
    assert created["invoiceDescription"].endswith("[bh:cust7-map3]")
    post = fake.requests_to("/additions", method="POST")[0]
    assert '"quantity":12.5' in post.raw_body  # exact decimal text, no float noise
    assert post.body["billCustomer"] == "Billable"
    assert post.body["product"]["id"] == created["product"]["id"]

    outcome, updated = client.upsert_addition(agreement_id, "M365-BP", Decimal("14"), "cust7-map3")
    assert outcome == "updated"
    assert updated["quantity"] == Decimal("14")
    patch = fake.requests_to("/additions/", method="PATCH")[0]
    assert patch.body == [{"op": "replace", "path": "quantity", "value": 14}]

    outcome, same = client.upsert_addition(agreement_id, "M365-BP", Decimal("14.00"), "cust7-map3")
    assert outcome == "unchanged"
    assert same["id"] == created["id"]

    (only,) = fake.additions_of(agreement_id)
    assert only["quantity"] == Decimal("14")
    assert len(fake.requests_to("/additions", method="POST")) == 1


def test_upsert_updates_price_and_level_keeping_user_text(fake, world):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)
    _, created = client.upsert_addition(agreement_id, "BACKUP-GB", Decimal("100"), "k1", level=1)
    assert parse_marker(created["invoiceDescription"]) == ("k1", 1)
    fake.additions[created["id"]]["invoiceDescription"] = "Backup for HQ [bh:k1;level=1]"

    outcome, updated = client.upsert_addition(
        agreement_id, "BACKUP-GB", Decimal("100"), "k1", level=2, unit_price=Decimal("0.045")
    )
    assert outcome == "updated"
    assert updated["unitPrice"] == Decimal("0.045")
    assert updated["invoiceDescription"] == "Backup for HQ [bh:k1;level=2]"
    assert client.upsert_addition(
        agreement_id, "BACKUP-GB", Decimal("100"), "k1", level=2, unit_price=Decimal("0.0450")
    ) == ("unchanged", updated)


def test_upsert_keeps_separate_keys_apart_and_ignores_cancelled(fake, world):
    agreement_id = world["agreement"]["id"]
    fake.add_addition(
        agreement_id,
        "M365-BP",
        3,
        invoiceDescription="old [bh:a]",
        cancelledDate="2020-01-31T00:00:00Z",
    )
    fake.add_addition(agreement_id, "M365-BP", 9, invoiceDescription="hand made")
    client = client_for(fake)
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal(5), "a")[0] == "created"
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal(6), "b")[0] == "created"
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal(7), "a")[0] == "updated"
    by_text = {a["invoiceDescription"]: a["quantity"] for a in fake.additions_of(agreement_id)}
    assert by_text["hand made"] == 9
    assert by_text["old [bh:a]"] == 3
    assert by_text["Microsoft 365 Business Premium [bh:a]"] == 7
    assert by_text["Microsoft 365 Business Premium [bh:b]"] == 6


def test_upsert_refuses_a_key_on_another_product(fake, world):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)
    client.upsert_addition(agreement_id, "M365-BP", Decimal(1), "k")
    with pytest.raises(ConnectWiseError) as caught:
        client.upsert_addition(agreement_id, "BACKUP-GB", Decimal(1), "k")
    assert caught.value.kind == "bad_request"
    assert "M365-BP" in str(caught.value)


def test_upsert_unknown_product_is_not_found(fake, world):
    with pytest.raises(ConnectWiseError) as caught:
        client_for(fake).upsert_addition(world["agreement"]["id"], "NOPE", Decimal(1), "k")
    assert caught.value.kind == "not_found"
    assert "NOPE" in str(caught.value)
    assert fake.requests_to("/additions", method="POST") == []


def test_upsert_rejects_bad_arguments(fake, world):
    client = client_for(fake)
    with pytest.raises(ValueError):
        client.upsert_addition(world["agreement"]["id"], "M365-BP", Decimal(1), "has space")
    with pytest.raises(ValueError):
        client.upsert_addition(world["agreement"]["id"], "M365-BP", Decimal("NaN"), "k")
    assert fake.requests_log == []


# -------------------------------------------------------------------- retries


def test_get_500_is_retried_then_succeeds(fake, world):
    fake.fail_next("company/companies", status=500, times=2)
    companies = client_for(fake).find_companies("Acme")
    assert [c["name"] for c in companies] == ["Acme Corp"]
    assert [r.status for r in fake.requests_to("company/companies")] == [500, 500, 200]


def test_429_is_retried(fake, world):
    fake.fail_next("procurement/catalog", status=429)
    assert len(client_for(fake).catalog_items()) == 2
    assert [r.status for r in fake.requests_to("procurement/catalog")] == [429, 200]


def test_persistent_500_gives_a_server_error_after_all_attempts(fake):
    fake.fail_next("system/info", status=503, times=10)
    with pytest.raises(ConnectWiseError) as caught:
        client_for(fake).test_connection()
    assert caught.value.kind == "server"
    assert caught.value.status == 503
    assert caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value)
    assert len(fake.requests_log) == 3


def test_slow_get_times_out_then_is_retried(fake):
    fake.delay_next("system/info", seconds=1.0)
    started = time.monotonic()
    assert client_for(fake).test_connection()["version"] == fake.version
    assert time.monotonic() - started < 2.0
    assert len(fake.requests_log) == 2


def test_patch_500_is_retried(fake, world):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)
    client.upsert_addition(agreement_id, "M365-BP", Decimal(1), "k")
    fake.fail_next("/additions/", status=502, method="PATCH")
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal(2), "k")[0] == "updated"
    assert [r.status for r in fake.requests_to("/additions/", method="PATCH")] == [502, 200]
    assert fake.additions_of(agreement_id)[0]["quantity"] == 2


def test_post_500_is_rechecked_before_posting_again(fake, world):
    agreement_id = world["agreement"]["id"]
    fake.fail_next("/additions", status=500, method="POST")  # rejected, nothing stored
    outcome, addition = client_for(fake).upsert_addition(agreement_id, "M365-BP", Decimal(4), "k")
    assert outcome == "created"
    assert [a["quantity"] for a in fake.additions_of(agreement_id)] == [4]
    methods = [r.method for r in fake.requests_to(f"agreements/{agreement_id}/additions")]
    # look-up, failed POST, re-check (nothing there), POST again
    assert methods == ["GET", "POST", "GET", "POST"]


def test_post_timeout_after_commit_recovers_without_a_duplicate(fake, world):
    agreement_id = world["agreement"]["id"]
    fake.delay_next("/additions", seconds=1.0, method="POST")  # stored, answer too late
    client = client_for(fake)

    outcome, addition = client.upsert_addition(agreement_id, "M365-BP", Decimal("7.25"), "k")

    assert outcome == "created"
    assert addition["quantity"] == Decimal("7.25")
    assert len(fake.requests_to("/additions", method="POST")) == 1
    assert [a["quantity"] for a in fake.additions_of(agreement_id)] == [Decimal("7.25")]

    # replaying the same sync changes nothing and posts nothing
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal("7.25"), "k")[0] == "unchanged"
    assert len(fake.additions_of(agreement_id)) == 1
    assert len(fake.requests_to("/additions", method="POST")) == 1


def test_post_timeout_reported_then_replay_yields_one_addition(fake, world):
    agreement_id = world["agreement"]["id"]
    path = f"agreements/{agreement_id}/additions"
    # The POST is stored but answered late, and so is the re-check GET after it
    # (the look-up GET before the POST passes: skip=1).
    fake.delay_next(path, seconds=1.0, method="POST")
    fake.delay_next(path, seconds=1.0, method="GET", skip=1)
    client = client_for(fake, max_retries=0)

    client.confirm_window = 0  # one look-up right after the timeout, no waiting
    with pytest.raises(ConnectWiseError) as caught:
        client.upsert_addition(agreement_id, "M365-BP", Decimal(3), "k")
    assert caught.value.kind == "uncertain"
    assert "the next sync looks for its key [bh:k]" in str(caught.value)
    assert [r.method for r in fake.requests_to(path)] == ["GET", "POST", "GET"]

    # The server did create it; the replay finds it by its key.
    outcome, addition = client.upsert_addition(agreement_id, "M365-BP", Decimal(5), "k")
    assert outcome == "updated"
    assert addition["quantity"] == 5
    (only,) = fake.additions_of(agreement_id)
    assert only["quantity"] == 5
    assert len(fake.requests_to("/additions", method="POST")) == 1


# ------------------------------------------------------------------- settings


def good_settings(**overrides) -> ConnectWiseSettings:
    values = dict(
        site_url="https://api-na.myconnectwise.net",
        company_id="acmemsp",
        public_key="Pub1234567890abc",
        private_key="Priv0987654321ab12",
        client_id="3f2b8c1e-7a4d-4e5f-9b6a-0c1d2e3f4a5b",
    )
    values.update(overrides)
    return ConnectWiseSettings(**values)


def test_valid_settings_have_no_errors():
    assert good_settings().validate() == {}
    pasted = good_settings(site_url="https://cw.example.com/v4_6_release/apis/3.0/")
    assert pasted.validate() == {}
    assert pasted.api_url == "https://cw.example.com/v4_6_release/apis/3.0/"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"site_url": ""}, "site_url", "required"),
        ({"site_url": "na.myconnectwise.net"}, "site_url", "https://"),
        ({"site_url": "ftp://na.myconnectwise.net"}, "site_url", "https://"),
        ({"site_url": "https://user:pw@host"}, "site_url", "password"),
        ({"company_id": ""}, "company_id", "Company ID is required"),
        ({"company_id": "acme+x"}, "company_id", "'+'"),
        ({"public_key": ""}, "public_key", "Public key is required"),
        ({"public_key": "ab:cd"}, "public_key", "':'"),
        ({"private_key": " "}, "private_key", "Private key is required"),
        ({"private_key": "abc def"}, "private_key", "spaces"),
        ({"client_id": ""}, "client_id", "Client ID is required"),
        ({"timeout": 0}, "timeout", "Timeout"),
        ({"max_retries": -1}, "max_retries", "Max retries"),
        ({"backoff": -0.5}, "backoff", "Backoff"),
    ],
)
def test_settings_validation_names_the_field(overrides, field, words):
    errors = good_settings(**overrides).validate()
    assert field in errors
    assert words in errors[field]


def test_several_errors_at_once():
    errors = good_settings(site_url="", company_id="", private_key="").validate()
    assert set(errors) == {"site_url", "company_id", "private_key"}


def test_masked_hides_secrets():
    settings = good_settings()
    shown = settings.masked()
    assert shown["private_key"] == "••••••ab12"
    assert shown["public_key"] == "••••••0abc"
    assert "Priv0987654321" not in json.dumps(shown)
    assert "Pub1234567890" not in json.dumps(shown)
    assert settings.client_id not in json.dumps(shown)
    assert shown["site_url"] == settings.site_url
    assert shown["company_id"] == "acmemsp"
    assert good_settings(private_key="short").masked()["private_key"] == "••••••"
    assert "Priv0987654321ab12" not in repr(settings)
    in_url = good_settings(site_url="https://me:secret@cw.example.com").masked()
    assert in_url["site_url"] == "https://••••••@cw.example.com"


# --------------------------------------------------------------- small pieces


def test_decimals_are_sent_exactly():
    assert dumps({"q": Decimal("0.1"), "p": Decimal("1E+3"), "n": None}) == (
        '{"q":0.1,"p":1000,"n":null}'
    )
    assert dumps([Decimal("12.50"), date(2025, 1, 2)]) == '[12.50,"2025-01-02T00:00:00Z"]'
    with pytest.raises(ValueError):
        dumps(Decimal("Infinity"))


def test_marker_helpers():
    assert addition_marker("k") == "[bh:k]"
    assert addition_marker("k", 3) == "[bh:k;level=3]"
    assert with_marker("", "k", None) == "[bh:k]"
    assert with_marker("Text [bh:k;level=1] tail", "k", 2) == "Text [bh:k;level=2] tail"
    assert with_marker("Text [bh:other]", "k", None) == "Text [bh:other] [bh:k]"
    long = with_marker("x" * 7000, "k", None)
    assert len(long) <= 6000 and long.endswith(" [bh:k]")
    assert parse_marker("nothing") is None


def test_fake_conditions_parser():
    items = [
        {"id": 1, "name": "Acme", "company": {"id": 7}, "flag": False},
        {"id": 2, "name": "acme two", "company": {"id": 8}, "flag": True},
        {"id": 3, "name": 'Quote "Q"', "company": {"id": 7}, "flag": False},
    ]

    def ids(conditions):
        return [i["id"] for i in filter_by_conditions(items, conditions)]

    assert ids('name like "ACME%"') == [1, 2]
    assert ids("company/id=7 and flag=false") == [1, 3]
    assert ids('(name contains "two" or id = 3) and company/id != 7') == [2]
    assert ids(r'name = "Quote \"Q\""') == [3]
    assert ids("id in (1, 3)") == [1, 3]
    assert ids('name not like "acme%"') == [3]


# ------------------------------------------- duplicates, Retry-After, precision


class FakeClock:
    """A monotonic clock that only moves when the client sleeps; ``on_sleep`` runs first."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def clocked_client(fake, clock: FakeClock, **overrides) -> ConnectWiseClient:
    extra = {k: overrides.pop(k) for k in ("retry_after_max", "confirm_window") if k in overrides}
    values = {"timeout": TIMEOUT, "max_retries": 2, "backoff": 0.5, **overrides}
    return ConnectWiseClient(
        fake.settings(**values), sleep=clock.sleep, clock=clock.monotonic, **extra
    )


def test_post_timeout_then_a_late_save_ends_with_exactly_one_addition(fake, world):
    """Reproduction (issue 15, item 5): the POST times out, ConnectWise stores it a moment
    later; the client must not post again but find the addition by its key."""
    agreement_id = world["agreement"]["id"]
    path = f"agreements/{agreement_id}/additions"
    held = fake.save_late(path, method="POST")
    # ConnectWise saves the addition while the client waits before its second look-up
    clock = FakeClock(on_sleep=lambda n: n == 1 and held.release())
    client = clocked_client(fake, clock)

    outcome, addition = client.upsert_addition(agreement_id, "M365-BP", Decimal(3), "k")

    assert held.saved.is_set()
    (only,) = fake.additions_of(agreement_id)
    assert (outcome, addition["id"], only["quantity"]) == ("created", only["id"], 3)
    assert len(fake.requests_to(path, method="POST")) == 1
    # look-up, POST (timed out), look-up at once, then look-ups with backoff until found
    assert [r.method for r in fake.requests_to(path)] == ["GET", "POST", "GET", "GET"]
    assert clock.sleeps == [0.5]


def test_post_timeout_never_confirmed_leaves_the_item_uncertain_then_resolves_by_key(fake, world):
    agreement_id = world["agreement"]["id"]
    path = f"agreements/{agreement_id}/additions"
    held = fake.save_late(path, method="POST")
    clock = FakeClock()
    client = clocked_client(fake, clock, confirm_window=10)

    with pytest.raises(ConnectWiseError) as caught:
        client.upsert_addition(agreement_id, "M365-BP", Decimal(3), "k")

    err = caught.value
    assert err.kind == "uncertain" and not err.retryable
    assert "[bh:k]" in err.message and "next sync" in err.message
    assert len(fake.requests_to(path, method="POST")) == 1  # never posted blindly again
    assert sum(clock.sleeps) <= 10  # looked for it for a bounded time, with backoff
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert fake.additions_of(agreement_id) == []

    assert held.release()  # ConnectWise stored it after all; the next sync finds it
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal(3), "k")[0] == "unchanged"
    assert len(fake.additions_of(agreement_id)) == 1
    assert len(fake.requests_to(path, method="POST")) == 1


def test_a_duplicate_addition_is_cancelled_and_reported(fake, world):
    agreement_id = world["agreement"]["id"]
    first = fake.add_addition(agreement_id, "M365-BP", 2, invoiceDescription="M365 [bh:k]")
    dup = fake.add_addition(agreement_id, "M365-BP", 2, invoiceDescription="M365 [bh:k]")
    other = fake.add_addition(agreement_id, "M365-BP", 1, invoiceDescription="M365 [bh:x]")
    client = client_for(fake)

    outcome, addition = client.upsert_addition(agreement_id, "M365-BP", Decimal(5), "k")

    assert (outcome, addition["id"]) == ("updated", first["id"])
    by_id = {a["id"]: a for a in fake.additions_of(agreement_id)}
    assert by_id[dup["id"]]["cancelledDate"] == date.today().isoformat() + "T00:00:00Z"
    assert by_id[first["id"]]["cancelledDate"] is None
    assert by_id[first["id"]]["quantity"] == 5
    assert by_id[other["id"]]["cancelledDate"] is None
    assert client.cancelled == [
        {"agreement_id": agreement_id, "addition_id": dup["id"], "key": "k",
         "kept_id": first["id"]}
    ]  # fmt: skip
    # reconcile a set of keys on its own: nothing more to cancel
    assert client.cancel_duplicates(agreement_id, {"k", "x"}) == []


def test_429_on_post_honours_retry_after(fake, world):
    agreement_id = world["agreement"]["id"]
    path = f"agreements/{agreement_id}/additions"
    fake.fail_next(path, status=429, method="POST", retry_after=7)
    clock = FakeClock()

    outcome, _ = clocked_client(fake, clock).upsert_addition(agreement_id, "M365-BP", 2, "k")

    assert outcome == "created"
    assert clock.sleeps == [7.0]
    assert [r.status for r in fake.requests_to(path, method="POST")] == [429, 201]
    assert len(fake.additions_of(agreement_id)) == 1


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_retry_after_is_honoured_on_get_and_patch_beyond_30s(fake, world, method):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)
    client.upsert_addition(agreement_id, "M365-BP", Decimal(1), "k")
    fake.fail_next("/additions", status=429, method=method, retry_after=90)
    clock = FakeClock()

    outcome, _ = clocked_client(fake, clock).upsert_addition(agreement_id, "M365-BP", 2, "k")

    assert outcome == "updated"
    assert clock.sleeps == [90.0]
    assert [r.status for r in fake.requests_to("/additions", method=method)][-2:] == [429, 200]


def test_retry_after_beyond_the_ceiling_gives_up_without_calling_early(fake, world):
    fake.fail_next("system/info", status=429, retry_after=121)
    clock = FakeClock()
    with pytest.raises(ConnectWiseError) as caught:
        clocked_client(fake, clock).test_connection()
    assert caught.value.kind == "server" and caught.value.status == 429
    assert "121" in caught.value.message and "120" in caught.value.message
    assert clock.sleeps == [] and len(fake.requests_to("system/info")) == 1
    # a configured ceiling: tests and operators may lower it
    fake.fail_next("system/info", status=429, retry_after=3)
    with pytest.raises(ConnectWiseError):
        clocked_client(fake, clock, retry_after_max=2).test_connection()
    fake.fail_next("system/info", status=429, retry_after=2)
    assert clocked_client(fake, clock, retry_after_max=2).test_connection()["version"]
    assert clock.sleeps == [2.0]


def test_a_quantity_beyond_double_precision_is_not_patched_again(fake, world):
    agreement_id = world["agreement"]["id"]
    client = client_for(fake)
    quantity = Decimal("2.12345678901234567890")

    assert client.upsert_addition(agreement_id, "M365-BP", quantity, "k")[0] == "created"
    (stored,) = fake.additions_of(agreement_id)
    assert stored["quantity"] == Decimal("2.1234567890123457")  # the fake keeps a double
    assert client.upsert_addition(agreement_id, "M365-BP", quantity, "k")[0] == "unchanged"
    assert fake.requests_to("/additions/", method="PATCH") == []
    # a real change is still pushed
    assert client.upsert_addition(agreement_id, "M365-BP", Decimal("2.5"), "k")[0] == "updated"


def test_retry_after_as_an_http_date(fake, world):
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    fake.fail_next("procurement/catalog", status=429, retry_after=when)
    clock = FakeClock()
    assert len(clocked_client(fake, clock).catalog_items()) == 2
    (slept,) = clock.sleeps
    assert 15 < slept <= 20
