"""API fuzzing with schemathesis against /api/v1/openapi.json, in-process (WSGI).

Every operation of the document is fuzzed as a logged-in user at each level (the provider's
operator, a reseller's admin, a customer's admin), every built-in plugin enabled under a
licence covering its feature. Path ids are drawn from real objects of the tree (the caller's
own, its children's and other tenants') as well as generated ones, so requests reach the
handlers and not only the 404 of an unknown id. Every response must:

* never be a 500;
* carry a status code, content type and body that the document declares for it.

Valid input (positive mode) is fuzzed at every level; invalid input (negative mode) once, as
the operator: it is refused while being parsed, before anyone's privileges are looked at.
Bounded (``MAX_EXAMPLES`` per operation, level and mode) and deterministic (derandomized, no
example database), so it costs the same on every run and on both backends.
"""

from __future__ import annotations

import socket
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import BUILTIN_PLUGINS

# examples per operation: (level, mode) -> count. Valid input reaches the handlers at every
# level; the operator, who reaches all of them, gets the most.
MAX_EXAMPLES = {
    ("provider", "positive"): 8,
    ("provider", "negative"): 4,
    ("reseller", "positive"): 5,
    ("customer", "positive"): 5,
}
FEATURES = ["FT-3001.007", "BH-UNITS", "BH-PSA"]
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "BOTH",
    "customer_billing_cycle_day": 1,
}
# 502/503 are answers, not crashes: ConnectWise unreachable (psa_error), a document being
# rendered. Everything else from 500 up is a bug.
UPSTREAM = {502: "psa_error", 503: "render_failed"}
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def no_outside_network(monkeypatch):
    """A fuzzed PSA connection must not make the test resolve or reach random hosts."""
    real = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"fuzzing: no network for {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


class Tree:
    """Provider > Reseller R > Customer RC; Provider > Customer A; one object of each kind."""

    def __init__(self, ctx, world, install_license):
        from core import roles
        from core.billing import catalog
        from core.billing.invoicing import lifecycle as invoices
        from core.billing.models import BillRun
        from core.connectors.models import ConnectorLink, ConnectorMapping, SyncRun
        from plugins.billing_units.service import units
        from plugins.psa_mapping.service import integration as psa

        install_license(FEATURES)
        host = ctx.extensions["billhive"].host
        for name in BUILTIN_PLUGINS:
            host.set_enabled(name, True)
        self.world = world
        self.provider = world.provider
        self.reseller = world.add_account(world.provider, "Reseller R", "reseller", profile=PROFILE)
        self.reseller_admin = world.add_user(self.reseller, "r-admin@example.com")
        self.rcustomer = world.add_account(self.reseller, "Customer RC")
        self.customer_admin = world.add_user(self.rcustomer, "rc-admin@example.com")
        self.users = {
            "provider": world.operator,
            "reseller": self.reseller_admin,
            "customer": self.customer_admin,
        }
        ids: dict[str, set] = {}

        def keep(kind, obj):
            ids.setdefault(kind, set()).add(obj.id)
            return obj

        for acc in (self.provider, self.reseller, self.rcustomer, world.customer_a):
            keep("account", acc)
            role = roles.create_role(
                None, acc, {"name": "Viewer", "description": "v", "privileges": ["users.view"]}
            )
            keep("role", role)
            keep("bill_run", BillRun.create(as_of="2026-02-01", scope=acc, status="done"))
        for user in (world.operator, world.user_a, self.reseller_admin, self.customer_admin):
            keep("user", user)
        plans = {}
        for seller in (self.provider, self.reseller):
            product = catalog.create_product(
                None, {"account_id": seller.id, "code": "SEAT", "name": "Seat", "unit": "seat"}
            )
            plans[seller.id] = catalog.create_plan(
                None, {"product_id": product.id, "name": "Std", "currency": "EUR",
                       "recurring_price": "10.00"}
            )  # fmt: skip
            psa.save_connection(
                None,
                seller,
                {"site_url": "http://127.0.0.1:9", "company_id": "acme", "public_key": "pub",
                 "private_key": "priv", "client_id": "client", "timeout": "0.2",
                 "max_retries": "0", "backoff": "0.01"},
            )  # fmt: skip
            keep("mapping", ConnectorMapping.create(account=seller, connector="connectwise",
                                                    product_code="SEAT", mapping_type="per_unit",
                                                    remote_product="SEAT-CW", level=1))  # fmt: skip
            keep("sync_run", SyncRun.create(account=seller, connector="connectwise",
                                            trigger="test", status="ok"))  # fmt: skip
        for seller, buyer in ((self.provider, self.reseller), (self.reseller, self.rcustomer),
                              (self.provider, world.customer_a)):  # fmt: skip
            catalog.create_subscription(
                None, {"account_id": buyer.id, "plan_id": plans[seller.id].id,
                       "start": "2026-01-01"}
            )  # fmt: skip
            draft = invoices.create_draft(
                None, buyer, seller, [{"description": "Seat", "quantity": "2", "unit_price": "5"}]
            )
            keep("invoice", draft)
            issued = invoices.create_draft(
                None, buyer, seller, [{"description": "Seat", "quantity": "1", "unit_price": "7"}]
            )
            keep("invoice", invoices.issue(issued))
            number = units.create_number(None, buyer, {"e164": f"+4420794600{buyer.id:02d}"})
            keep("number", number)
            team = keep("team", units.create_team(None, buyer, {"name": "Team"}))
            keep("unit", units.create_unit(None, buyer, {"name": "Unit", "team_ids": [team.id],
                                                         "number_ids": [number.id]}))  # fmt: skip
            link = ConnectorLink.create(account=seller, connector="connectwise", customer=buyer,
                                        remote_id=7, remote_name="Co", target_id=3)  # fmt: skip
            keep("link", link)
        self.ids = {k: sorted(v) for k, v in ids.items()}

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
    }

    def path_candidates(self, path: str, names: list[str]) -> list[dict]:
        """Real ids for an operation's path parameters (every combination is too many: each
        parameter is drawn on its own)."""
        out: dict[str, list] = {}
        for name in names:
            kind = self.PARAM_KINDS.get(name)
            if name == "run_id":
                kind = "sync_run" if "/psa/" in path or "/connectors/" in path else "bill_run"
            if kind is not None:
                out[name] = self.ids[kind]
            elif name == "fmt":
                out[name] = ["RAW", "PDF", "CSV"]
            elif name == "name":
                out[name] = ["nonexistent", "role_wizard"]
            elif name == "prefix":
                out[name] = ["bh_xxxxxxx"]
        return out


@pytest.fixture
def tree(ctx, world, install_license, no_outside_network):
    return Tree(ctx, world, install_license)


def _token(app, user) -> str:
    from tests.conftest import PASSWORD

    resp = app.test_client().post(
        "/api/v1/tokens", json={"email": user.email, "password": PASSWORD}
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["token"]


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


def _check(case, headers) -> None:
    """Send one generated request and judge the answer."""
    response = case.call(headers=headers)
    if response.status_code >= 500:
        try:
            code = response.json().get("code")
        except Exception:  # noqa: BLE001 - not JSON: a crash page
            code = None
        assert UPSTREAM.get(response.status_code) == code, (
            f"server error {response.status_code}: {response.text[:500]}\n{case.as_curl_command()}"
        )
    case.validate_response(response, checks=CHECKS, headers=headers)


def _runner(strategy, max_examples: int, headers: dict):
    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)  # fmt: skip
    @given(case=strategy)
    def run(case):
        _check(case, headers)

    return run


def _strategy(operation, tree, mode):
    """Generated cases; in positive mode also cases whose path ids name real objects."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    candidates = tree.path_candidates(operation.path, names)
    if not candidates or mode is not GenerationMode.POSITIVE:
        return generated
    real = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in candidates.items()})
    return st.one_of(
        generated,
        real.flatmap(lambda ids: operation.as_strategy(generation_mode=mode, path_parameters=ids)),
    )


def _fuzz(app, schema, tree, level, modes) -> list[str]:
    user = tree.users[level]
    headers = {"Authorization": f"Bearer {_token(app, user)}"}
    failures: list[str] = []
    for operation in _operations(schema):
        for mode in modes:
            examples = MAX_EXAMPLES[level, mode.value]
            run = _runner(_strategy(operation, tree, mode), examples, headers)
            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported together
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:2000]}")
    return failures


def _wait_for_bill_runs():
    for thread in threading.enumerate():
        if thread.name.startswith("bill-run-"):
            thread.join(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["provider", "reseller", "customer"])
def test_fuzz_every_operation_as_each_level(ctx, tree, level):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", ctx)
    try:
        # invalid input is parsed (and refused) before anyone's privileges are looked at: the
        # negative mode runs once, as the operator, who reaches every handler
        modes = [GenerationMode.POSITIVE]
        if level == "provider":
            modes.append(GenerationMode.NEGATIVE)
        failures = _fuzz(ctx, schema, tree, level, modes)
    finally:
        _wait_for_bill_runs()
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)
