"""Signed licences: issue, parse and verify them (Ed25519 via ``cryptography``).

Pure functions only: no database, no Flask. The CLI (``billhive license issue|install|show``),
the database layer and the panel are wired to this module elsewhere.

A licence is a human-readable, pretty-printed JSON document::

    {
      "format": "billhive-license/1",
      "licensee": "Acme Telecom",
      "issued": "2026-11-22",
      "expires": "2027-11-22",
      "features": ["FT-3001.007", "BH-UNITS"],
      "key_id": "0123456789abcdef",
      "signature": "<base64 Ed25519 signature>"
    }

The signature covers the canonical JSON (``sort_keys=True``, ``separators=(",", ":")``,
``ensure_ascii=True``) of every field except ``signature``. Whitespace and key order in the
file therefore do not matter; any change to a value does. ``key_id`` is the first 16 hex
characters of the SHA-256 of the signer's raw 32-byte public key, so a verifier can name the
key that signed a licence it does not trust.

The format is strict: every field above is required, no other field is allowed and a key may
not appear twice. Anything else is refused as ``malformed`` before the signature is looked at.

Validity is inclusive at both ends: a licence is valid from its ``issued`` date up to and
including its ``expires`` date, and refused from the day after ``expires`` on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "FORMAT",
    "REASONS",
    "License",
    "LicenseError",
    "generate_keypair",
    "issue_license",
    "key_id",
    "load_public_keys",
    "parse_license",
    "verify_license",
]

FORMAT = "billhive-license/1"

#: Every value ``LicenseError.reason`` can take.
REASONS = frozenset({"malformed", "tampered", "untrusted", "expired", "not_yet_valid"})

#: Fields of a licence document, in the order they are written out.
FIELDS = ("format", "licensee", "issued", "expires", "features", "key_id", "signature")

_FEATURE_RE = re.compile(r"[A-Z][A-Z0-9-]*(?:\.[0-9A-Z]+)*")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_LICENSEE_MAX = 200
_SIGNATURE_LEN = 64  # bytes of an Ed25519 signature


class LicenseError(Exception):
    """A licence was refused.

    ``reason`` is one of :data:`REASONS`; ``detail`` says why in plain words; ``str(error)``
    is the whole message, e.g. ``licence refused (expired): it expired on 2026-01-01``.
    """

    def __init__(self, reason: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown licence refusal reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"licence refused ({reason}): {detail}")

    def __reduce__(self):  # keep the two-argument constructor picklable (task queues)
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True)
class License:
    """A verified licence. ``text`` is the document exactly as it was given to verification."""

    licensee: str
    issued: date
    expires: date
    features: tuple[str, ...]
    key_id: str
    text: str

    def covers(self, feature: str) -> bool:
        """True when the licence lists ``feature`` (exact, case-sensitive match).

        This does not look at dates; use :meth:`valid_on` (or verify again) for that.
        """
        return feature in self.features

    def valid_on(self, day: date) -> bool:
        """True when ``day`` lies between ``issued`` and ``expires``, both included."""
        day = _as_date(day)
        return self.issued <= day <= self.expires

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (dates as ``YYYY-MM-DD``); the raw ``text`` is left out."""
        return {
            "licensee": self.licensee,
            "issued": self.issued.isoformat(),
            "expires": self.expires.isoformat(),
            "features": list(self.features),
            "key_id": self.key_id,
        }


# --------------------------------------------------------------------------- keys


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair: (private PEM PKCS8 unencrypted, public PEM SubjectPublicKeyInfo).

    The private key is for development and demos (``billhive license issue``); keep it out of
    deployed instances, which only need the public key.
    """
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def key_id(public_pem: bytes) -> str:
    """First 16 hex characters of the SHA-256 of the raw Ed25519 public key in ``public_pem``.

    Raises ValueError when ``public_pem`` is not an Ed25519 public key in PEM form.
    """
    return _key_id_of(_load_public(public_pem, "public key"))


def _key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _load_public(pem: bytes, what: str) -> Ed25519PublicKey:
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    if b"PRIVATE KEY-----" in pem:
        raise ValueError(f"{what} is a private key; give the matching public key instead")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a PEM public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{what} is a {type(public).__name__}, not an Ed25519 public key")
    return public


def _load_private(pem: bytes) -> Ed25519PrivateKey:
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # encrypted key, no password given
        raise ValueError(f"private key could not be loaded: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"private key is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"private key is a {type(private).__name__}, not an Ed25519 private key")
    return private


def load_public_keys(paths: list[str]) -> list[bytes]:
    """Read the PEM public keys at ``paths`` (in order) and return their bytes.

    A missing, unreadable or non-PEM file, a private key, or a key that is not Ed25519 raises
    ValueError naming the path.
    """
    keys = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"public key file {path} does not exist") from None
        except OSError as exc:
            raise ValueError(f"public key file {path} cannot be read: {exc.strerror}") from None
        _load_public(data, f"public key file {path}")
        keys.append(data)
    return keys


# --------------------------------------------------------------------------- issue


def issue_license(
    private_pem: bytes,
    licensee: str,
    features: list[str],
    expires: date,
    issued: date | None = None,
) -> str:
    """Sign a licence and return its pretty-printed JSON text (ending with a newline).

    ``issued`` defaults to today. ``licensee`` is stripped of surrounding blanks and must be a
    non-empty single line; ``features`` must be a non-empty list of codes like ``FT-3001.007``
    (duplicates are dropped, order kept); ``expires`` must be after ``issued``.
    Raises ValueError naming the offending field.
    """
    private = _load_private(private_pem)
    if issued is None:
        issued = date.today()

    if not isinstance(licensee, str):
        raise ValueError("licensee must be a string")
    licensee = licensee.strip()
    problem = _licensee_problem(licensee)
    if problem:
        raise ValueError(f"licensee {problem}")

    if isinstance(features, str) or not isinstance(features, list | tuple):
        raise ValueError("features must be a list of feature codes")
    if not features:
        raise ValueError("features must list at least one feature code")
    unique: list[str] = []
    for code in features:
        problem = _feature_problem(code)
        if problem:
            raise ValueError(f"features: {problem}")
        if code not in unique:
            unique.append(code)

    for name, value in (("issued", issued), ("expires", expires)):
        if isinstance(value, datetime) or not isinstance(value, date):
            raise ValueError(f"{name} must be a date (datetime.date), got {value!r}")
    if expires <= issued:
        raise ValueError(
            f"expires ({expires.isoformat()}) must be after issued ({issued.isoformat()})"
        )

    doc = {
        "format": FORMAT,
        "licensee": licensee,
        "issued": issued.isoformat(),
        "expires": expires.isoformat(),
        "features": unique,
        "key_id": _key_id_of(private.public_key()),
    }
    doc["signature"] = base64.b64encode(private.sign(_canonical(doc))).decode("ascii")
    return _pretty(doc)


def _canonical(doc: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but ``signature``, canonical JSON."""
    signed = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def _pretty(doc: dict[str, Any]) -> str:
    """One field a line, in FIELDS order, features on one line; non-ASCII kept readable."""
    lines = [f"  {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)}" for k in FIELDS]
    return "{\n" + ",\n".join(lines) + "\n}\n"


# --------------------------------------------------------------------------- parse


def _malformed(detail: str) -> LicenseError:
    return LicenseError("malformed", detail)


def _licensee_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with blanks"
    if any(ch < " " or ch == "\x7f" for ch in value):
        return "must be a single line without control characters"
    if len(value) > _LICENSEE_MAX:
        return f"must be at most {_LICENSEE_MAX} characters"
    return None


def _feature_problem(code: Any) -> str | None:
    if not isinstance(code, str):
        return f"feature code {code!r} is not a string"
    if not _FEATURE_RE.fullmatch(code):
        return (
            f"feature code {code!r} is not valid (expected upper-case letters, digits and "
            "hyphens, optionally followed by .-separated parts, e.g. 'FT-3001.007')"
        )
    return None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _malformed(f"field {key!r} appears more than once")
        seen[key] = value
    return seen


def _parse_date(doc: dict[str, Any], field: str) -> date:
    value = doc[field]
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _malformed(f"field {field!r} must be a date YYYY-MM-DD (got {value!r})")


def parse_license(text: str) -> dict:
    """Check a licence's structure (not its signature) and return its fields as a dict.

    Values are returned as found in the document (dates stay ``YYYY-MM-DD`` strings).
    Raises LicenseError with reason ``malformed`` saying which field is wrong and why.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("not UTF-8 text") from None
    if not isinstance(text, str):
        raise _malformed(f"expected the licence text, got {type(text).__name__}")
    text = text.removeprefix("\ufeff")  # tolerate a byte-order mark left by an editor
    if not text.strip():
        raise _malformed("the licence is empty")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _malformed(
            f"not a JSON document (truncated?): {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise _malformed(f"expected a JSON object, got a JSON {type(doc).__name__}")

    missing = [f for f in FIELDS if f not in doc]
    if missing:
        raise _malformed("missing field" + ("s " if len(missing) > 1 else " ") + _names(missing))
    unknown = sorted(k for k in doc if k not in FIELDS)
    if unknown:
        raise _malformed("unknown field" + ("s " if len(unknown) > 1 else " ") + _names(unknown))

    if doc["format"] != FORMAT:
        raise _malformed(f"field 'format' must be {FORMAT!r} (got {doc['format']!r})")

    problem = _licensee_problem(doc["licensee"])
    if problem:
        raise _malformed(f"field 'licensee' {problem}")

    issued = _parse_date(doc, "issued")
    expires = _parse_date(doc, "expires")
    if expires <= issued:
        raise _malformed(
            f"field 'expires' ({doc['expires']}) must be after 'issued' ({doc['issued']})"
        )

    features = doc["features"]
    if not isinstance(features, list) or not features:
        raise _malformed("field 'features' must be a non-empty list of feature codes")
    for code in features:
        problem = _feature_problem(code)
        if problem:
            raise _malformed(f"field 'features': {problem}")
    if len(set(features)) != len(features):
        dup = next(c for c in features if features.count(c) > 1)
        raise _malformed(f"field 'features' lists {dup!r} more than once")

    if not isinstance(doc["key_id"], str) or not _KEY_ID_RE.fullmatch(doc["key_id"]):
        raise _malformed("field 'key_id' must be 16 lower-case hex characters")

    sig = doc["signature"]
    try:
        if not isinstance(sig, str):
            raise ValueError
        raw = base64.b64decode(sig, validate=True)
    except (ValueError, binascii.Error):
        raise _malformed("field 'signature' must be base64 text") from None
    if len(raw) != _SIGNATURE_LEN:
        raise _malformed(
            f"field 'signature' must hold a {_SIGNATURE_LEN}-byte Ed25519 signature "
            f"(it holds {len(raw)} bytes)"
        )
    return doc


def _names(fields: list[str]) -> str:
    return ", ".join(repr(f) for f in fields)


# --------------------------------------------------------------------------- verify


def _as_date(day: date) -> date:
    if isinstance(day, datetime):
        return day.date()
    if not isinstance(day, date):
        raise TypeError(f"expected a date, got {day!r}")
    return day


def verify_license(text: str, trusted_public_pems: list[bytes], today: date) -> License:
    """Verify a licence against the trusted public keys on ``today``; return it or refuse it.

    Checks, in this order, raising LicenseError with the first failing reason:

    1. ``malformed``: the text is not a well-formed licence (see :func:`parse_license`);
    2. ``untrusted``: its ``key_id`` is not the id of any key in ``trusted_public_pems``;
    3. ``tampered``: the signature does not match the contents (a value changed after signing);
    4. ``not_yet_valid``: ``today`` is before ``issued``;
    5. ``expired``: ``today`` is after ``expires``.

    Validity is inclusive: a licence is valid ON its ``expires`` date and refused from the day
    after. ``today`` is passed in (not read from the clock) so that callers and tests control it;
    a ``datetime`` is reduced to its date.

    A trusted key that is not an Ed25519 PEM public key is a configuration error and raises
    ValueError, not LicenseError.
    """
    today = _as_date(today)
    trusted: dict[str, list[Ed25519PublicKey]] = {}
    for i, pem in enumerate(trusted_public_pems):
        public = _load_public(pem, f"trusted public key #{i + 1}")
        trusted.setdefault(_key_id_of(public), []).append(public)

    doc = parse_license(text)
    kid = doc["key_id"]

    if kid not in trusted:
        if trusted:
            known = ", ".join(sorted(trusted))
            detail = f"it was signed by key {kid} which this instance does not trust "
            detail += f"(trusted key{'s' if len(trusted) > 1 else ''}: {known})"
        else:
            detail = f"it was signed by key {kid} and this instance trusts no public keys"
        raise LicenseError("untrusted", detail)

    signature = base64.b64decode(doc["signature"])
    message = _canonical(doc)
    for public in trusted[kid]:
        try:
            public.verify(signature, message)
            break
        except InvalidSignature:
            continue
    else:
        raise LicenseError(
            "tampered",
            "its signature does not match its contents — the file was changed after it was signed",
        )

    issued = date.fromisoformat(doc["issued"])
    expires = date.fromisoformat(doc["expires"])
    if today < issued:
        raise LicenseError(
            "not_yet_valid",
            f"it is valid from {issued.isoformat()} and today is {today.isoformat()} "
            "(check this machine's clock)",
        )
    if today > expires:
        raise LicenseError(
            "expired",
            f"it expired on {expires.isoformat()} (its last valid day; today is "
            f"{today.isoformat()})",
        )

    return License(
        licensee=doc["licensee"],
        issued=issued,
        expires=expires,
        features=tuple(doc["features"]),
        key_id=kid,
        text=text if isinstance(text, str) else bytes(text).decode("utf-8"),
    )
