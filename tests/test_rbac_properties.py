"""Property: whatever the account tree, roles and users, nobody reads or changes anything
outside their subtree or beyond their privileges — through the REST API, with every refusal
of an existing object (404) or of an escalation (422) in the audit log.

The oracle is computed here from the generated data (which roles each user holds, what each
role lists, the declared default roles), not from ``core.rbac``.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_role_wizard import fresh_g_per_request

_seq = itertools.count()

CODES = [
    "accounts.view",
    "accounts.manage",
    "users.view",
    "users.manage",
    "roles.manage",
    "catalog.view",
    "catalog.manage",
    "billing.view",
    "billing.edit",
    "billruns.run",
    "plugins.manage",
    "audit.view",
    "servicedesk.submit",
    "extra.use",
    "extra.admin",
]


@pytest.fixture
def app(make_app):
    return fresh_g_per_request(
        make_app(
            plugins=["role_wizard"],
            modules={
                "rw_extra": "tests.plugins.rw_extra_privileges",
                "rw_branch": "tests.plugins.rw_branch_types",
            },
        )
    )


@pytest.fixture
def env(ctx):
    from core.bootstrap import initialise

    host = ctx.extensions["billhive"].host
    for name in ("role_wizard", "rw_extra", "rw_branch"):
        host.set_enabled(name, True)
    provider, operator, _ = initialise("Provider", "op@example.com", "secret-pass-1")
    return ctx, host, provider


def level_privileges(host, level):
    return {c for c, p in host.privileges().items() if level in p.levels}


def default_privileges(host, level, code):
    from core.registry import ALL

    declared = host.catalog.default_roles[f"{level}:{code}"].item
    at = level_privileges(host, level)
    return at if declared.privileges == ALL else set(declared.privileges) & at


@st.composite
def scenarios(draw):
    n = draw(st.integers(min_value=1, max_value=4))
    nodes = []  # (parent index or None for provider, kind)
    for i in range(n):
        branches = [j for j in range(i) if nodes[j][1] == "branch"]
        parent = draw(st.sampled_from([None, *branches]))
        kind = draw(st.sampled_from(["branch", "customer"]))
        nodes.append((parent, kind))
    # account index -1 is the provider
    accounts = [-1, *range(n)]
    custom = {a: draw(st.sets(st.sampled_from(CODES), max_size=6)) for a in accounts}
    users = []
    for a in accounts:
        for _ in range(draw(st.integers(min_value=1, max_value=2))):
            users.append(
                (a, draw(st.booleans()), draw(st.sampled_from([None, "full_access", "other"])))
            )
    attempts = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(users) - 1),  # actor
                st.sampled_from(["read", "create", "assign", "patch"]),
                st.sampled_from(accounts),  # target account
                st.integers(0, len(users) - 1),  # target user (assign)
                st.sampled_from(CODES),  # privilege (create/patch)
                st.booleans(),  # custom role or a default one (assign/patch)
            ),
            min_size=1,
            max_size=12,
        )
    )
    return nodes, custom, users, attempts


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_nobody_reaches_outside_their_subtree_or_beyond_their_privileges(env, scenario):
    from flask import g

    from core import accounts, roles, users
    from core.models import AuditEntry, Role, User, UserRole

    app, host, provider = env
    nodes, custom_codes, user_specs, attempts = scenario
    run = next(_seq)

    # -- build the world of this example (a fresh subtree of the provider) ------------------
    acc = {-1: provider}
    level = {-1: "provider"}
    top = accounts.create_account(
        None, {"name": f"Top {run}", "type": "rwbranch", "parent_id": provider.id}
    )
    for i, (parent, kind) in enumerate(nodes):
        parent_acc = top if parent is None else acc[parent]
        acc[i] = accounts.create_account(
            None,
            {
                "name": f"N{run}.{i}",
                "type": "rwbranch" if kind == "branch" else "customer",
                "parent_id": parent_acc.id,
            },
        )
        level[i] = "reseller" if kind == "branch" else "customer"
    role_of, granted = {}, {}
    for a, codes in custom_codes.items():
        valid = sorted(set(codes) & level_privileges(host, level[a]))
        role_of[a] = roles.create_role(
            None, acc[a], {"name": f"Custom {run}", "description": "generated", "privileges": valid}
        )
        granted[role_of[a].id] = set(valid)
    for role in Role.select().where(Role.account.in_([x.id for x in acc.values()])):
        if role.is_default:
            lvl = level[next(k for k, v in acc.items() if v.id == role.account_id)]
            granted[role.id] = default_privileges(host, lvl, role.default_code)

    people, held, tokens, own_level = [], [], [], []
    for k, (a, with_custom, default_code) in enumerate(user_specs):
        user = User.create(account=acc[a], email=f"u{run}.{k}@example.com", password_hash="!")
        mine = set()
        if with_custom:
            UserRole.create(user=user, role=role_of[a])
            mine |= granted[role_of[a].id]
        if default_code:
            defaults = list(
                Role.select().where(Role.account == acc[a], Role.default_code.is_null(False))
            )
            pick = next((r for r in defaults if r.default_code == default_code), defaults[-1])
            UserRole.create(user=user, role=pick)
            mine |= granted[pick.id]
        people.append(user)
        own_level.append(level[a])
        held.append(mine)
        tokens.append(users.issue_token(user))
    g.pop("_billhive_privs", None)
    client = app.test_client()

    def call(k, method, url, **kw):
        before = AuditEntry.select().where(AuditEntry.action.endswith(".refused")).count()
        resp = getattr(client, method)(url, headers={"Authorization": f"Bearer {tokens[k]}"}, **kw)
        after = AuditEntry.select().where(AuditEntry.action.endswith(".refused")).count()
        if resp.status_code in (404, 422):
            assert after > before, f"{method} {url} refused {resp.status_code} but not audited"
        return resp

    def grantable(k):
        """What user k may put on roles: what they hold, plus privileges that do not exist
        at their own level (they could never hold those; their parent level manages them)."""
        everything = set(host.privileges())
        return held[k] | (everything - level_privileges(host, own_level[k]))

    def inside(k, account):
        return account.path.startswith(people[k].account.path)

    # -- the attempts ------------------------------------------------------------------------
    for actor, what, target, target_user, code, use_custom in attempts:
        me, mine, account = people[actor], held[actor], acc[target]
        if what == "read":
            for url, need in (
                (f"/api/v1/accounts/{account.id}", "accounts.view"),
                (f"/api/v1/accounts/{account.id}/roles", "users.view"),
                (f"/api/v1/accounts/{account.id}/users", "users.view"),
            ):
                status = call(actor, "get", url).status_code
                expected = 404 if not inside(actor, account) else 200 if need in mine else 403
                assert status == expected, (url, me.email, sorted(mine))
        elif what == "create":
            name = f"Attempt {run}.{next(_seq)}"
            resp = call(
                actor,
                "post",
                f"/api/v1/accounts/{account.id}/roles",
                json={"name": name, "description": "x", "privileges": [code]},
            )
            if not inside(actor, account):
                expected = 404
            elif "roles.manage" not in mine:
                expected = 403
            elif code not in level_privileges(host, level[target]) or code not in grantable(actor):
                expected = 422
            else:
                expected = 201
            assert resp.status_code == expected, (code, me.email, sorted(mine), resp.get_json())
            created = Role.get_or_none(Role.name == name)
            assert (created is not None) == (expected == 201)
            if created is not None:
                granted[created.id] = {code}
        elif what == "assign":
            role = role_of[target] if use_custom else acc[target].roles.order_by(Role.id).first()
            other = people[target_user]
            resp = call(actor, "post", f"/api/v1/roles/{role.id}/users", json={"user_id": other.id})
            if not inside(actor, role.account) or not inside(actor, other.account):
                expected = 404
            elif "users.manage" not in mine:
                expected = 403
            elif role.account_id != other.account_id or granted[role.id] - grantable(actor):
                expected = 422
            else:
                expected = 200
            assert resp.status_code == expected, (role.name, me.email, other.email, resp.get_json())
            linked = UserRole.get_or_none(user=other, role=role) is not None
            if expected == 200:
                assert linked
                held[target_user] |= granted[role.id]
        else:  # patch: try to add a privilege to a role
            role = role_of[target] if use_custom else acc[target].roles.order_by(Role.id).first()
            new = sorted(granted[role.id] | {code})
            resp = call(actor, "patch", f"/api/v1/roles/{role.id}", json={"privileges": new})
            added = {code} - granted[role.id]
            if not inside(actor, role.account):
                expected = 404
            elif "roles.manage" not in mine:
                expected = 403
            elif role.is_default:
                expected = 409
            elif added and (
                code not in level_privileges(host, level[target]) or code not in grantable(actor)
            ):
                expected = 422
            else:
                expected = 200
            assert resp.status_code == expected, (role.name, code, me.email, resp.get_json())
            if expected == 200:
                granted[role.id] = set(new)
                for k, person in enumerate(people):
                    if UserRole.get_or_none(user=person, role=role):
                        held[k] |= granted[role.id]
        g.pop("_billhive_privs", None)

    # -- afterwards: every role holds what the oracle says, and only privileges of its level -
    from core import rbac

    for role in Role.select().where(Role.account.in_([x.id for x in acc.values()])):
        a = next(k for k, v in acc.items() if v.id == role.account_id)
        stored = rbac.stored_privileges(role)
        assert stored <= level_privileges(host, level[a])
        if role.id in granted:
            assert stored == granted[role.id], role.name
