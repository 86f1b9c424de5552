"""The authorization matrix: every object endpoint of the API and of the panel, against objects
of the caller's own account, a child, a sibling, another reseller's tree and the parent.

The endpoints are not listed by hand: every rule of ``app.url_map`` with an object id in its
path is exercised (a new rule whose id kind the table below does not know fails the test, so
the matrix grows with the application). One object of each kind is made in every account:

    Provider P ── Reseller R1 ── Customer C1
               │              └─ Customer C1s
               └─ Reseller R2 ── Customer C2

Callers (each a Full Access admin): R1's admin (own R1, child C1, sibling R2, other tree C2,
parent P) and C1's admin (own C1, sibling C1s, other tree C2, parent R1).

* Outside the caller's subtree (sibling, other tree, parent) every method answers 404 — the
  answer a missing object gets — and nothing changes in the database.
* Within it (own, child) a page or a GET answers 200, except where ``NOT_200`` says why not.
* An outside object named next to an own account (``/accounts/<own>/billing/units/<other>``)
  or in a request body is also refused without leaking it.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.conftest import BUILTIN_PLUGINS

FEATURES = ["FT-3001.007", "BH-UNITS", "BH-PSA"]
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "BOTH",
    "customer_billing_cycle_day": 1,
}
OUTSIDE = ("sibling", "other_tree", "parent")
INSIDE = ("own", "child")
RELATIONS = {
    "reseller": {"own": "R1", "child": "C1", "sibling": "R2", "other_tree": "C2", "parent": "P"},
    "customer": {"own": "C1", "sibling": "C1s", "other_tree": "C2", "parent": "R1"},
}
# Path parameter -> kind of object (``run_id`` depends on the area).
PARAM_KINDS = {
    "account_id": "account",
    "user_id": "user",
    "role_id": "role",
    "invoice_id": "invoice",
    "unit_id": "unit",
    "number_id": "number",
    "team_id": "team",
    "mapping_id": "mapping",
    "link_id": "link",
    "method_id": "payment_method",
    "payment_id": "payment",
    "entry_id": "ledger_entry",
    "subscription_id": "subscription",
    "message_id": "mail_message",
}
# String parameters that name something inside the object the ids point at.
STRING_PARAMS = {"fmt": "PDF", "code": "SEAT", "action": "void", "connector": "connectwise"}
# Rules without an object of a tenant (operator-wide or the caller's own).
NOT_TENANT_OBJECTS = {"/api/v1/tokens/<prefix>", "/plugins/<name>/<action>",
                      "/api/v1/plugins/<name>/enable", "/api/v1/plugins/<name>/disable"}  # fmt: skip
# GETs within the subtree that rightly answer something else than 200, and why: (rule
# pattern, where: "*", the target's level P/R/C, "caller:<level>" or "<relation>:<caller
# level>", status).
NOT_200 = [
    # the PSA integration belongs to providers and resellers; a customer is linked, not linked to
    (r"^/(api/v1/psa/)?accounts/<int:account_id>/psa|^/api/v1/psa/accounts/", "C", 404),
    # so do billing connectors' settings (core.connectors)
    (r"^/(api/v1/)?accounts/<int:account_id>/connectors", "C", 404),
    # a Reseller page or resource of an account that is not a reseller
    (r"^/(api/v1/)?resellers/<int:account_id>", "C", 404),
    # a reseller's profile is edited by the account above it, never by the reseller itself
    (r"^/resellers/<int:account_id>/profile$", "own:R", 403),
    # the generated ?customer_id= names no customer of the account
    (r"company-suggestions$", "*", 404),
    # bill runs are run by providers and resellers: a customer's own run is not for it to see
    (r"bill-runs/<int:run_id>$|/billing/runs/<int:run_id>\.json$", "caller:C", 403),
    # the tree's accounts have no e-mail address: their messages failed, no .eml was written
    (r"^/mail/messages/<int:message_id>\.eml$", "*", 404),
    # the ConnectWise catalog is fetched live: no ConnectWise answers here
    (r"/psa/accounts/<int:account_id>/catalog$|/psa/catalog$", "*", 502),
    # the account's Billing tab opens (redirects to) the first sub-tab the caller sees
    (r"^/accounts/<int:account_id>/billing$", "*", 302),
]


class Tree:
    def __init__(self, ctx, world, install_license):
        from core.billing import catalog
        from core.billing.invoicing import lifecycle as invoices
        from core.billing.models import BillRun, Subscription
        from core.connectors.models import ConnectorLink, ConnectorMapping, SyncRun
        from plugins.billing_units.service import units
        from plugins.psa_mapping.service import integration as psa
        from tests.billing_support import setup_catalog

        install_license(FEATURES)
        host = ctx.extensions["billhive"].host
        for name in BUILTIN_PLUGINS:
            host.set_enabled(name, True)
        P = world.provider
        R1 = world.add_account(P, "Reseller R1", "reseller", profile=PROFILE)
        R2 = world.add_account(P, "Reseller R2", "reseller", profile=PROFILE)
        C1 = world.add_account(R1, "Customer C1")
        C1s = world.add_account(R1, "Customer C1s")
        C2 = world.add_account(R2, "Customer C2")
        self.accounts = {"P": P, "R1": R1, "R2": R2, "C1": C1, "C1s": C1s, "C2": C2}
        self.level = {"P": "P", "R1": "R", "R2": "R", "C1": "C", "C1s": "C", "C2": "C"}
        self.objects: dict[tuple[str, str], object] = {}
        self.admins = {}
        for key, acc in self.accounts.items():
            self.objects[key, "account"] = acc
            admin = world.operator if key == "P" else world.add_user(acc, f"{key.lower()}@x.test")
            self.admins[key] = admin
            self.objects[key, "user"] = admin
            from core import roles

            self.objects[key, "role"] = roles.create_role(
                None, acc, {"name": "Viewer", "description": "v", "privileges": ["users.view"]}
            )
            self.objects[key, "bill_run"] = BillRun.create(as_of="2026-02-01", scope=acc)
            number = units.create_number(None, acc, {"e164": f"+44207946{acc.id:04d}"})
            team = units.create_team(None, acc, {"name": f"Team {key}"})
            unit = units.create_unit(
                None, acc, {"name": f"Unit {key}", "team_ids": [team.id], "number_ids": [number.id]}
            )
            self.objects[key, "number"], self.objects[key, "team"] = number, team
            self.objects[key, "unit"] = unit
            issuer = acc.parent or acc
            draft = invoices.create_draft(
                None, acc, issuer, [{"description": "Seat", "quantity": "1", "unit_price": "9"}]
            )
            self.objects[key, "invoice"] = invoices.issue(draft)
            from core.mail.models import MailMessage

            self.objects[key, "mail_message"] = MailMessage.get(  # recorded as it was issued
                MailMessage.invoice == self.objects[key, "invoice"].id
            )
        _, plan = setup_catalog(P, code="SUB")
        for key, acc in self.accounts.items():
            self.objects[key, "subscription"] = Subscription.create(
                account=acc, plan=plan, start="2026-01-01"
            )
        for key in ("P", "R1", "R2"):
            acc = self.accounts[key]
            catalog.create_product(
                None, {"account_id": acc.id, "code": "SEAT", "name": "Seat", "unit": "seat"}
            )
            psa.save_connection(
                None,
                acc,
                {"site_url": "http://127.0.0.1:9", "company_id": "acme", "public_key": "pub",
                 "private_key": "priv", "client_id": "client", "timeout": "0.2",
                 "max_retries": "0", "backoff": "0.01"},
            )  # fmt: skip
            self.objects[key, "mapping"] = ConnectorMapping.create(
                account=acc,
                connector="connectwise",
                product_code="SEAT",
                mapping_type="per_unit",
                remote_product="X",
            )
            self.objects[key, "sync_run"] = SyncRun.create(
                account=acc, connector="connectwise", trigger="t", status="ok"
            )
        for owner, customer in (("P", "R1"), ("R1", "C1"), ("R2", "C2")):
            self.objects[owner, "link"] = ConnectorLink.create(
                account=self.accounts[owner],
                connector="connectwise",
                customer=self.accounts[customer],
                remote_id=1,
            )
        self._ledger_objects()

    def _ledger_objects(self):
        """Payment methods, payments and ledger entries of every account."""
        from core.billing.ledger import payments
        from core.billing.models import LedgerEntry

        for key, acc in self.accounts.items():
            self.objects[key, "payment_method"] = payments.add_method(
                None, acc, {"type": "direct_debit", "description": f"DD {key}"}
            )
            if acc.parent_id is not None:
                self.objects[key, "payment"] = payments.record_payment(
                    None, acc, {"amount": "1.00", "currency": "EUR"}
                )
            entry = LedgerEntry.select().where(LedgerEntry.account == acc.id).first()
            if entry is not None:
                self.objects[key, "ledger_entry"] = entry


@pytest.fixture
def tree(ctx, world, install_license):
    return Tree(ctx, world, install_license)


def object_rules(app) -> list:
    rules = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.rule in NOT_TENANT_OBJECTS or rule.endpoint == "static":
            continue
        if rule.endpoint.endswith(".static"):
            continue
        rules.append(rule)
    return sorted(rules, key=lambda r: r.rule)


def kinds_of(rule) -> dict[str, str]:
    out = {}
    for name in rule.arguments:
        if name == "run_id":
            out[name] = (
                "sync_run" if "/psa/" in rule.rule or "/connectors/" in rule.rule else "bill_run"
            )
        elif name in PARAM_KINDS:
            out[name] = PARAM_KINDS[name]
        elif name not in STRING_PARAMS:
            raise AssertionError(
                f"{rule.rule}: the matrix does not know path parameter <{name}>; add it to "
                "PARAM_KINDS (an object kind) or STRING_PARAMS"
            )
    return out


def primary_kind(kinds: dict[str, str]) -> str:
    others = [k for k in kinds.values() if k != "account"]
    return others[0] if others else "account"


def url_for(rule, tree, key: str, account_key: str | None = None) -> str | None:
    """The rule's URL with every id naming the objects of account ``key`` (``account_id`` may
    be overridden: an own account next to an outside object)."""
    values = {}
    for name, kind in kinds_of(rule).items():
        source = account_key if (kind == "account" and account_key) else key
        obj = tree.objects.get((source, kind))
        if obj is None:
            return None
        values[name] = obj.id
    for name in rule.arguments:
        if name in STRING_PARAMS:
            values[name] = STRING_PARAMS[name]
    path = rule.rule
    for name, value in values.items():
        path = re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), path)
    return path


def methods_of(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def db_fingerprint(app) -> str:
    """A digest of every table but the logs a request may write (audit of refused access,
    sessions, login attempts, tokens' last use, the users' last login)."""
    db = app.extensions["billhive"].database
    skip = {"audit_entry", "login_session", "login_throttle", "api_token", "user", "state_version"}
    digest = hashlib.sha256()
    for table in sorted(db.get_tables()):
        if table in skip:
            continue
        rows = db.execute_sql(f'SELECT * FROM "{table}"').fetchall()
        digest.update(table.encode())
        digest.update(json.dumps(sorted(map(repr, rows))).encode())
    return digest.hexdigest()


def expected_inside(rule, tree, caller_level: str, relation: str, target: str) -> int:
    level = tree.level[target]
    for pattern, where, status in NOT_200:
        if not re.search(pattern, rule.rule):
            continue
        caller = caller_level[0].upper()
        if where in ("*", level, f"{relation}:{caller}", f"caller:{caller}"):
            return status
    return 200


class Bodies:
    """A request body the API's own document calls valid, for each operation: an outside
    object must be refused by its scope check (404), not by the parsing of a body (422)."""

    def __init__(self, app):
        import schemathesis

        self.schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
        self.cache: dict = {}

    def __call__(self, rule, method: str):
        from hypothesis import HealthCheck, Phase, given, settings
        from schemathesis.core import NOT_SET

        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        key = (path, method)
        if key not in self.cache:
            found = []
            operation = self.schema[path][method]

            @settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy())
            def first(case):
                found.append(case)

            first()
            body = found[0].body if found else NOT_SET
            query = (found[0].query if found else None) or {}
            self.cache[key] = (None if body is NOT_SET else body, query)
        return self.cache[key]


def send(client, method, url, is_api, request=()):
    body, query = request or (None, None)
    kwargs = {"query_string": query} if query else {}
    if is_api and method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = body if body is not None else {}
    if not is_api and method == "POST":
        kwargs["data"] = {}
    return getattr(client, method.lower())(url, **kwargs)


@pytest.mark.parametrize("caller", ["reseller", "customer"])
def test_every_object_endpoint_answers_404_outside_the_subtree(ctx, tree, api, panel, caller):
    me = "R1" if caller == "reseller" else "C1"
    admin = tree.admins[me]
    clients = {True: api(admin), False: panel(admin)}
    bodies = Bodies(ctx)
    before = db_fingerprint(ctx)
    problems, checked = [], 0
    for rule in object_rules(ctx):
        kinds = kinds_of(rule)
        is_api = rule.rule.startswith("/api/")
        client = clients[is_api]
        for relation, target in RELATIONS[caller].items():
            url = url_for(rule, tree, target)
            if url is None:
                continue  # no object of that kind in that account
            for method in methods_of(rule):
                if relation in INSIDE and method != "GET":
                    continue  # changes within the subtree are the other tests' business
                resp = send(client, method, url, is_api, bodies(rule, method) if is_api else ())
                checked += 1
                want = 404 if relation in OUTSIDE else expected_inside(rule, tree, caller,
                                                                       relation, target)  # fmt: skip
                if resp.status_code != want:
                    problems.append(f"{method} {url} ({relation} {target}, {rule.rule}): "
                                    f"{resp.status_code}, expected {want}")  # fmt: skip
            # an outside object named next to the caller's own account
            if relation in OUTSIDE and "account" in kinds.values() and len(kinds) > 1:
                mixed = url_for(rule, tree, target, account_key=me)
                if mixed is None:
                    continue
                for method in methods_of(rule):
                    request = bodies(rule, method) if is_api else ()
                    resp = send(client, method, mixed, is_api, request)
                    checked += 1
                    if resp.status_code != 404:
                        problems.append(f"{method} {mixed} (own account, {relation} object): "
                                        f"{resp.status_code}, expected 404")  # fmt: skip
    assert checked > 100
    assert not problems, f"{len(problems)} of {checked} answers wrong:\n" + "\n".join(problems)
    assert db_fingerprint(ctx) == before, "a refused request changed the database"


MISSING = 987654321
# Ids in request bodies and query strings: ``{id}`` is an outside object's id, then an id
# that names nothing; the two answers must be the same (status and body, the id aside), so
# nobody learns from an answer that an object of another tenant exists. (method, url, kind
# of the object, body or query, in the API?)
BODY_IDS = [
    ("POST", "/api/v1/users", "account",
     {"email": "new@x.test", "password": "long-enough-1", "account_id": "{id}"}),
    ("POST", "/api/v1/users", "role",
     {"email": "new@x.test", "password": "long-enough-1", "account_id": "{own}",
      "role_ids": ["{id}"]}),
    ("POST", "/api/v1/accounts", "account", {"name": "N", "type": "customer", "parent_id": "{id}"}),
    ("POST", "/api/v1/roles/{own_role}/users", "user", {"user_id": "{id}"}),
    ("POST", "/api/v1/products", "account", {"account_id": "{id}", "code": "N", "name": "N"}),
    ("POST", "/api/v1/subscriptions", "account",
     {"account_id": "{id}", "plan_id": MISSING + 1, "start": "2026-01-01"}),
    ("POST", "/api/v1/invoices", "account",
     {"account_id": "{id}", "lines": [{"description": "x", "unit_price": "1"}]}),
    ("GET", "/api/v1/invoices", "account", {"account_id": "{id}"}),
    ("POST", "/api/v1/accounts/{own}/billing-units", "user", {"name": "U", "user_ids": ["{id}"]}),
    ("POST", "/api/v1/accounts/{own}/billing-units", "team", {"name": "U", "team_ids": ["{id}"]}),
    ("POST", "/api/v1/accounts/{own}/billing-units", "number",
     {"name": "U", "number_ids": ["{id}"]}),
    ("PATCH", "/api/v1/teams/{own_team}", "user", {"user_ids": ["{id}"]}),
    ("POST", "/api/v1/psa/accounts/{own}/company-links", "account",
     {"customer_id": "{id}", "psa_company_id": 1, "agreement_id": 1}),
    ("GET", "/api/v1/psa/accounts/{own}/company-suggestions", "account", {"customer_id": "{id}"}),
    ("POST", "/api/v1/accounts/{child}/payments", "invoice",
     {"amount": "1.00", "invoice_ids": ["{id}"]}),
    ("POST", "/accounts/{own}/users/{own_user}/roles", "role", {"role_id": "{id}"}),
    ("POST", "/billing/subscriptions", "account",
     {"account_id": "{id}", "plan_id": str(MISSING + 1), "start": "2026-01-01"}),
]  # fmt: skip


def _fill(value, values):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return values[value[1:-1]]
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def _answer(resp, object_id) -> tuple:
    """Status and what the answer says, the id itself left out. A page is reduced to its
    messages (flash and field errors), the rest of it being the same form either way."""
    text = resp.get_data(as_text=True)
    if not resp.is_json:
        text = " | ".join(re.findall(r'class="(?:field-error|flash[^"]*)"[^>]*>(.*?)</div>', text))
    return resp.status_code, re.sub(rf"(?<![\w-]){object_id}(?!\w)", "ID", text)


def test_an_outside_id_in_a_body_or_query_is_answered_like_a_missing_one(ctx, tree, api, panel):
    admin = tree.admins["R1"]
    clients = {True: api(admin), False: panel(admin)}
    own = {"own": tree.accounts["R1"].id, "child": tree.accounts["C1"].id,
           "own_role": tree.objects["R1", "role"].id, "own_user": admin.id,
           "own_team": tree.objects["R1", "team"].id}  # fmt: skip
    before = db_fingerprint(ctx)
    problems = []
    for method, url, kind, payload in BODY_IDS:
        is_api = url.startswith("/api/")
        for target in ("R2", "C2", "P"):
            answers = []
            for object_id in (tree.objects[target, kind].id, MISSING):
                values = {**own, "id": object_id}
                path = url.format(**values)
                data = _fill(payload, values)
                if method == "GET":
                    kwargs = {"query_string": data}
                elif is_api:
                    kwargs = {"json": data}
                else:
                    kwargs = {"data": data}
                resp = getattr(clients[is_api], method.lower())(path, **kwargs)
                answers.append(_answer(resp, object_id))
            if answers[0] != answers[1]:
                problems.append(f"{method} {url} with {target}'s {kind}: {answers[0][0]} "
                                f"{answers[0][1][:300]!r} but for a missing {kind}: "
                                f"{answers[1][0]} {answers[1][1][:300]!r}")  # fmt: skip
            elif answers[0][0] < 400 and method != "GET":  # a list filtered by it is empty
                problems.append(
                    f"{method} {url} with {target}'s {kind}: accepted ({answers[0][0]})"
                )
    assert not problems, "\n".join(problems)
    assert db_fingerprint(ctx) == before, "a request naming an outside object changed something"
