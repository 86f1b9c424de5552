"""The installed licence: stored in the database, verified against the trusted keys on use.

Verification is repeated on every check (Ed25519 is cheap), so a licence that expires while
the instance runs stops covering its features the next day without anyone doing anything.
What happens then is deliberate: enabled add-ons stay enabled and keep their data, reads go on
working, and new work (creating a reseller, a bill run's reseller invoicing, ...) is refused
with a message naming the feature — see ``PluginHost.require_licensed``.
"""

from __future__ import annotations

import glob
from datetime import date

from core import audit
from core.db import database
from core.licenses import License, LicenseError, load_public_keys, verify_license
from core.models import LicenseRecord


def trusted_keys(patterns: list[str]) -> list[bytes]:
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern)})
    return load_public_keys(paths) if paths else []


def current_record() -> LicenseRecord | None:
    return (
        LicenseRecord.select()
        .where(LicenseRecord.is_current)
        .order_by(LicenseRecord.id.desc())
        .first()
    )


def current(patterns: list[str], today: date | None = None) -> tuple[License | None, str | None]:
    """The installed licence if valid today, else ``(None, why)``."""
    record = current_record()
    if record is None:
        return None, "no licence is installed"
    try:
        return verify_license(record.text, trusted_keys(patterns), today or date.today()), None
    except LicenseError as exc:
        return None, f"the installed licence is not valid: {exc}"


def feature_problem(feature: str, patterns: list[str], today: date | None = None) -> str | None:
    lic, why = current(patterns, today)
    if lic is None:
        return f"licence feature {feature} is required: {why}"
    if not lic.covers(feature):
        return (
            f"licence feature {feature} is required, but the installed licence "
            f"(licensee {lic.licensee}) does not list it"
        )
    return None


def install(text: str, patterns: list[str], actor=None, today: date | None = None) -> License:
    """Verify and install a licence; a refused licence changes nothing."""
    lic = verify_license(text, trusted_keys(patterns), today or date.today())
    with database.atomic():
        previous = current_record()
        LicenseRecord.update(is_current=False).where(LicenseRecord.is_current).execute()
        record = LicenseRecord.create(
            text=text, licensee=lic.licensee, expires=lic.expires, features=list(lic.features)
        )
        audit.record(
            actor,
            "license.install",
            record,
            object_type="license",
            before={"licensee": previous.licensee} if previous else None,
            after=lic.to_dict(),
        )
    return lic
