"""The licence verifier where operators meet it: installing through the API and the panel, and
a licence changed in the database after it was installed.

``tests/test_licenses.py`` checks the verifier itself and ``tests/test_cli.py`` the command
line; here every way of installing refuses a tampered, truncated, re-signed, expired or not yet
valid file with the reason, and changes nothing: the licence installed before stays current,
no audit entry is written, the add-ons it covers keep working.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date, timedelta

import pytest

from core.licenses import _canonical, _pretty, generate_keypair, issue_license
from tests.conftest import issue

FEATURE = "BH-UNITS"


def tampered(text: str) -> str:
    return text.replace('"BH-UNITS"', '"BH-UNITS", "FT-3001.007"')


def truncated(text: str) -> str:
    return text[: len(text) // 2]


def resigned_claiming_the_trusted_key(text: str) -> str:
    """Extended by someone holding another key, who kept the trusted key's id."""
    stranger, _ = generate_keypair()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    doc = json.loads(text)
    doc["features"] = [FEATURE, "FT-3001.007"]
    signature = load_pem_private_key(stranger, None).sign(_canonical(doc))
    doc["signature"] = base64.b64encode(signature).decode()
    return _pretty(doc)


def resigned_with_another_key(text: str) -> str:
    stranger, _ = generate_keypair()
    return issue_license(stranger, "Test Licensee", [FEATURE, "FT-3001.007"],
                         date.today() + timedelta(days=30))  # fmt: skip


def expired(keys) -> str:
    return issue(keys, [FEATURE], issued=date.today() - timedelta(days=60),
                 expires=date.today() - timedelta(days=1))  # fmt: skip


def not_yet_valid(keys) -> str:
    return issue(keys, [FEATURE], issued=date.today() + timedelta(days=1),
                 expires=date.today() + timedelta(days=60))  # fmt: skip


BAD = {
    "tampered": lambda good, keys: tampered(good),
    "malformed": lambda good, keys: truncated(good),
    "tampered-resigned": lambda good, keys: resigned_claiming_the_trusted_key(good),
    "untrusted": lambda good, keys: resigned_with_another_key(good),
    "expired": lambda good, keys: expired(keys),
    "not_yet_valid": lambda good, keys: not_yet_valid(keys),
}


@pytest.fixture
def installed(ctx, world, install_license, license_keys):
    """A valid licence for BH-UNITS installed, billing_units enabled."""
    host = ctx.extensions["billhive"].host
    good = issue(license_keys, [FEATURE])
    install_license([FEATURE])
    host.set_enabled("billing_units", True)
    return {"good": good, "audit": _changes()}


def _changes() -> int:
    """Audit entries of changes (logging in through the API writes a token's)."""
    from core.models import AuditEntry

    return AuditEntry.select().where(~AuditEntry.action.startswith("token.")).count()


def _unchanged(ctx, installed):
    from core import license_store

    host = ctx.extensions["billhive"].host
    lic, problem = license_store.current(host.license_key_paths)
    assert problem is None and lic.features == (FEATURE,)
    assert _changes() == installed["audit"]
    assert host.license_problem("billing_units") is None
    assert host.license_problem("reseller_accounts") is not None  # nothing was extended


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_api_refuses_a_bad_licence_naming_the_reason(ctx, world, api, installed,
                                                         license_keys, kind):  # fmt: skip
    text = BAD[kind](installed["good"], license_keys)
    resp = api(world.operator).put("/api/v1/license", json={"text": text})
    assert resp.status_code == 422
    body = resp.get_json()
    reason = kind.split("-")[0]
    assert f"licence refused ({reason})" in body["message"] and "text" in body["errors"]
    _unchanged(ctx, installed)
    status = api(world.operator).get("/api/v1/license").get_json()
    assert status["valid"] is True and status["features"] == [FEATURE]


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_panel_refuses_a_bad_licence_file_naming_the_reason(ctx, world, panel, installed,
                                                                license_keys, kind):  # fmt: skip
    from io import BytesIO

    text = BAD[kind](installed["good"], license_keys)
    client = panel(world.operator)
    resp = client.post(
        "/license",
        data={"license_file": (BytesIO(text.encode()), "licence.json")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert resp.status_code == 422  # the Plugins & Licence page again, with the reason
    page = resp.get_data(as_text=True)
    reason = kind.split("-")[0]
    assert re.search(rf"licence refused \({reason}\)", page), page[:2000]
    _unchanged(ctx, installed)


def test_a_licence_edited_in_the_database_stops_covering_anything(ctx, world, api, installed):
    """Someone with database access adds a feature to the stored licence: every check
    verifies the signature again, so the stored text covers nothing any more — not even
    what it listed before — and says why."""
    from core.errors import LicenseRequired
    from core.models import LicenseRecord

    host = ctx.extensions["billhive"].host
    record = LicenseRecord.get(LicenseRecord.is_current)
    LicenseRecord.update(text=tampered(record.text), features=[FEATURE, "FT-3001.007"]).where(
        LicenseRecord.id == record.id
    ).execute()
    problem = host.license_problem("reseller_accounts")
    assert problem and "tampered" in problem
    with pytest.raises(LicenseRequired, match="tampered"):
        host.set_enabled("reseller_accounts", True, world.operator)
    with pytest.raises(LicenseRequired, match="tampered"):
        host.require_licensed("billing_units")  # new work of the enabled add-on is refused
    assert host.is_enabled("billing_units")  # but it stays enabled, its data readable
    status = api(world.operator).get("/api/v1/license").get_json()
    assert status["valid"] is False and "tampered" in status["problem"]
    resp = api(world.operator).post(
        f"/api/v1/accounts/{world.customer_a.id}/teams", json={"name": "New"}
    )
    assert resp.status_code == 403 and "BH-UNITS" in resp.get_json()["message"]


def test_a_licence_whose_trusted_key_file_was_replaced_covers_nothing(ctx, world, installed,
                                                                     tmp_path):  # fmt: skip
    """Swapping the instance's trusted public key (to trust one's own licences) makes the
    installed licence untrusted; it does not make a forged one valid."""
    host = ctx.extensions["billhive"].host
    _, stranger_public = generate_keypair()
    key_file = tmp_path / "data" / "license-keys" / "test.pem"
    key_file.write_bytes(stranger_public)
    problem = host.license_problem("billing_units")
    assert problem and "untrusted" in problem
