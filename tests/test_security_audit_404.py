"""Issue 16 item 9: every cross-tenant attempt is audited, whatever the object type.

Every object endpoint of the API and the panel (read from the URL map, as in
``tests/test_authz_matrix.py``) is asked for an object of another tenant, also next to the
caller's own account (``/accounts/<own>/payments/<other's>``). Each answer is 404 and leaves
exactly the audit entry ``<type>.access.refused`` naming the refused object and the request,
written by the one place that produces those 404s (``core.rbac``)."""

from __future__ import annotations

import pytest

from core.models import AuditEntry
from tests.test_authz_matrix import (
    Bodies,
    Tree,
    kinds_of,
    methods_of,
    object_rules,
    send,
    url_for,
)

CALLERS = {"reseller": ("R1", "R2"), "customer": ("C1", "C2")}


@pytest.fixture
def tree(ctx, world, install_license):
    return Tree(ctx, world, install_license)


def _refusals_since(last_id: int) -> list[AuditEntry]:
    return list(
        AuditEntry.select()
        .where((AuditEntry.id > last_id) & AuditEntry.action.endswith(".access.refused"))
        .order_by(AuditEntry.id)
    )


def _last_id() -> int:
    last = AuditEntry.select(AuditEntry.id).order_by(AuditEntry.id.desc()).first()
    return last.id if last else 0


@pytest.mark.parametrize("caller", ["reseller", "customer"])
def test_every_refused_outside_object_is_audited(ctx, tree, api, panel, caller):
    me, other = CALLERS[caller]
    admin = tree.admins[me]
    clients = {True: api(admin), False: panel(admin)}
    bodies = Bodies(ctx)
    problems, checked = [], 0
    for rule in object_rules(ctx):
        kinds = kinds_of(rule)
        is_api = rule.rule.startswith("/api/")
        variants = [(url_for(rule, tree, other), other)]
        if "account" in kinds.values() and len(kinds) > 1:  # own account, other's object
            variants.append((url_for(rule, tree, other, account_key=me), other))
        for n, (url, target) in enumerate(variants):
            if url is None:
                continue
            # what an entry may name: any of the other tenant's objects in the URL
            named_kinds = [k for k in kinds.values() if not (n and k == "account")]
            refused = {(type(o).__name__.lower(), str(o.id)) for o in
                       (tree.objects.get((target, k)) for k in named_kinds) if o}  # fmt: skip
            for method in methods_of(rule):
                before = _last_id()
                request = bodies(rule, method) if is_api else ()
                resp = send(clients[is_api], method, url, is_api, request)
                checked += 1
                if resp.status_code != 404:
                    continue  # the matrix test reports it
                entries = _refusals_since(before)
                named = [e for e in entries if (e.object_type, e.object_id) in refused]
                if not named:
                    problems.append(f"{method} {url} ({rule.rule}): 404 but no audit entry "
                                    f"(got {[e.action for e in entries]})")  # fmt: skip
                    continue
                entry = named[0]
                if (
                    entry.actor_id != admin.id
                    or (entry.after or {}).get("path") != url.split("?")[0]
                ):
                    problems.append(f"{method} {url}: entry {entry.action} {entry.after}")
    assert checked > 100
    assert not problems, f"{len(problems)} of {checked} refusals not audited:\n" + "\n".join(
        problems
    )


def test_the_reproduction_payments_methods_and_ledger_entries(ctx, tree, api):
    """Payments, payment methods and ledger entries of another tenant: 404 and audited."""
    me, other = "C1", "C2"
    client = api(tree.admins[me])
    own = tree.accounts[me].id
    for kind, tail in (("payment", "payments"), ("payment_method", "payment-methods"),
                       ("ledger_entry", "ledger")):  # fmt: skip
        obj = tree.objects[other, kind]
        before = _last_id()
        url = f"/api/v1/accounts/{own}/{tail}/{obj.id}"
        method = "get" if kind == "payment" else "delete" if kind == "payment_method" else None
        if method is None:
            url += "/reverse"
            resp = client.post(url, json={"memo": "x"})
        else:
            resp = getattr(client, method)(url)
        assert resp.status_code == 404, (url, resp.status_code)
        entries = _refusals_since(before)
        assert [(e.action, e.object_id) for e in entries] == [
            (f"{kind.replace('_', '')}.access.refused", str(obj.id))
        ], url
