"""Signed licences: what an operator would check before trusting core/licenses.py."""

import base64
import json
import pickle
from datetime import date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.licenses import (
    FORMAT,
    License,
    LicenseError,
    generate_keypair,
    issue_license,
    key_id,
    load_public_keys,
    parse_license,
    verify_license,
)

# Keys are cheap to make; plain module constants keep the tests free of custom fixtures.
VENDOR_PRIVATE, VENDOR_PUBLIC = generate_keypair()
OTHER_PRIVATE, OTHER_PUBLIC = generate_keypair()

ISSUED = date(2026, 11, 22)
EXPIRES = date(2027, 11, 22)
TODAY = date(2027, 3, 1)
FEATURES = ["FT-3001.007", "BH-UNITS"]


def issue(private=VENDOR_PRIVATE, **overrides):
    args = {
        "licensee": "Acme Telecom",
        "features": FEATURES,
        "expires": EXPIRES,
        "issued": ISSUED,
    }
    args.update(overrides)
    return issue_license(private, **args)


def verify(text, trusted=(VENDOR_PUBLIC,), today=TODAY):
    return verify_license(text, list(trusted), today)


def refused(text, reason, trusted=(VENDOR_PUBLIC,), today=TODAY):
    with pytest.raises(LicenseError) as info:
        verify(text, trusted, today)
    assert info.value.reason == reason, str(info.value)
    assert str(info.value).startswith(f"licence refused ({reason}): ")
    return str(info.value)


def edited(text, **changes):
    """The licence with some values changed and its old signature kept, pretty-printed again."""
    doc = json.loads(text)
    doc.update(changes)
    return json.dumps(doc, indent=2)


# --------------------------------------------------------------------------- valid licences


def test_freshly_issued_licence_verifies_and_covers_its_features():
    lic = verify(issue())
    assert isinstance(lic, License)
    assert lic.licensee == "Acme Telecom"
    assert lic.issued == ISSUED and lic.expires == EXPIRES
    assert lic.features == ("FT-3001.007", "BH-UNITS")
    assert lic.covers("FT-3001.007") and lic.covers("BH-UNITS")
    assert not lic.covers("FT-3001.008")
    assert not lic.covers("ft-3001.007")
    assert lic.key_id == key_id(VENDOR_PUBLIC)


def test_licence_file_is_readable_pretty_json_with_every_field():
    text = issue()
    assert text.startswith('{\n  "format": ')
    assert '  "features": ["FT-3001.007", "BH-UNITS"],\n' in text
    doc = json.loads(text)
    assert list(doc) == [
        "format", "licensee", "issued", "expires", "features", "key_id", "signature",
    ]  # fmt: skip
    assert doc["format"] == FORMAT == "billhive-license/1"
    assert doc["issued"] == "2026-11-22" and doc["expires"] == "2027-11-22"
    assert doc["key_id"] == key_id(VENDOR_PUBLIC)
    assert len(base64.b64decode(doc["signature"])) == 64
    assert parse_license(text) == doc


def test_licence_survives_being_written_to_and_read_from_a_file(tmp_path):
    text = issue(licensee="Société Générale Télécom — Zürich")
    path = tmp_path / "acme.license"
    path.write_text(text, encoding="utf-8")
    assert "Société" in path.read_text(encoding="utf-8")  # readable, not \u-escaped
    lic = verify(path.read_text(encoding="utf-8"))
    assert lic.licensee == "Société Générale Télécom — Zürich"
    assert verify(path.read_bytes()).licensee == lic.licensee


def test_reformatting_the_file_keeps_the_signature_valid():
    doc = json.loads(issue())
    compact = json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":"))
    assert verify(compact).features == ("FT-3001.007", "BH-UNITS")
    assert verify("\ufeff" + issue()).licensee == "Acme Telecom"  # BOM from a Windows editor


def test_licence_is_valid_on_its_last_day_and_refused_the_day_after():
    text = issue()
    assert verify(text, today=EXPIRES).expires == EXPIRES
    message = refused(text, "expired", today=EXPIRES + timedelta(days=1))
    assert "2027-11-22" in message


def test_licence_is_valid_on_its_first_day():
    assert verify(issue(), today=ISSUED).issued == ISSUED


def test_licence_signed_by_a_trusted_key_but_expired_is_refused_with_its_expiry_date():
    text = issue(issued=date(2025, 1, 1), expires=date(2026, 1, 1))
    message = refused(text, "expired", today=date(2026, 6, 1))
    assert "expired on 2026-01-01" in message
    assert "2026-06-01" in message


def test_licence_not_yet_valid_is_refused_with_its_start_date():
    message = refused(issue(), "not_yet_valid", today=ISSUED - timedelta(days=1))
    assert "valid from 2026-11-22" in message
    assert "clock" in message


def test_any_of_several_trusted_keys_may_have_signed_it():
    text = issue(private=OTHER_PRIVATE)
    assert verify(text, trusted=(VENDOR_PUBLIC, OTHER_PUBLIC)).key_id == key_id(OTHER_PUBLIC)


def test_verification_accepts_a_datetime_for_today():
    assert verify(issue(), today=datetime(2027, 11, 22, 23, 59)).licensee == "Acme Telecom"


def test_licence_to_dict_is_json_friendly():
    lic = verify(issue())
    assert json.loads(json.dumps(lic.to_dict())) == {
        "licensee": "Acme Telecom",
        "issued": "2026-11-22",
        "expires": "2027-11-22",
        "features": ["FT-3001.007", "BH-UNITS"],
        "key_id": key_id(VENDOR_PUBLIC),
    }


def test_valid_on_includes_both_ends():
    lic = verify(issue())
    assert lic.valid_on(ISSUED) and lic.valid_on(EXPIRES)
    assert not lic.valid_on(ISSUED - timedelta(days=1))
    assert not lic.valid_on(EXPIRES + timedelta(days=1))


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    "changes",
    [
        {"features": ["FT-3001.007", "BH-UNITS", "FT-9999.001"]},
        {"features": ["FT-3001.007"]},
        {"licensee": "Evil Corp"},
        {"expires": "2099-11-22"},
        {"issued": "2026-11-21"},
    ],
    ids=["feature-added", "feature-removed", "licensee-changed", "expiry-extended", "issued"],
)
def test_licence_edited_after_signing_is_refused_as_tampered(changes):
    message = refused(edited(issue(), **changes), "tampered")
    assert "signature does not match its contents" in message
    assert "changed after it was signed" in message


def test_expiry_extended_in_a_text_editor_is_refused_as_tampered():
    text = issue()
    assert text.count("2027-11-22") == 1
    refused(text.replace("2027-11-22", "2037-11-22"), "tampered", today=date(2030, 1, 1))


def test_signature_altered_is_refused_as_tampered():
    doc = json.loads(issue())
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[0] ^= 0x01
    refused(edited(issue(), signature=base64.b64encode(bytes(raw)).decode()), "tampered")


def test_licence_signed_by_another_key_but_claiming_the_trusted_key_id_is_tampered():
    forged = edited(issue(private=OTHER_PRIVATE), key_id=key_id(VENDOR_PUBLIC))
    refused(forged, "tampered")


def test_licence_resigned_with_an_untrusted_key_is_refused_naming_that_key():
    text = issue(private=OTHER_PRIVATE, features=[*FEATURES, "FT-9999.001"])
    message = refused(text, "untrusted")
    assert f"signed by key {key_id(OTHER_PUBLIC)}" in message
    assert "does not trust" in message
    assert key_id(VENDOR_PUBLIC) in message  # says which keys it does trust


def test_instance_with_no_trusted_keys_refuses_every_licence_as_untrusted():
    message = refused(issue(), "untrusted", trusted=())
    assert "trusts no public keys" in message


def test_checks_run_in_order_malformed_untrusted_tampered_then_dates():
    expired_day = EXPIRES + timedelta(days=1)
    # untrusted wins over tampered and expired
    untrusted = edited(issue(private=OTHER_PRIVATE), licensee="Evil Corp")
    refused(untrusted, "untrusted", today=expired_day)
    # tampered wins over expired and not yet valid
    refused(edited(issue(), licensee="Evil Corp"), "tampered", today=expired_day)
    refused(edited(issue(), licensee="Evil Corp"), "tampered", today=ISSUED - timedelta(1))
    # malformed wins over everything
    refused(edited(issue(private=OTHER_PRIVATE), expires="soon"), "malformed")


# --------------------------------------------------------------------------- malformed


def test_truncated_licence_file_is_refused_as_malformed():
    text = issue()
    message = refused(text[: len(text) // 2], "malformed")
    assert "not a JSON document (truncated?)" in message


@pytest.mark.parametrize(
    "text", ["licensee: Acme\nexpires: 2027-11-22\n", "<licence/>", "{'format': 1}"]
)
def test_text_that_is_not_json_is_refused_as_malformed(text):
    assert "not a JSON document" in refused(text, "malformed")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_licence_file_is_refused_as_malformed(text):
    assert "empty" in refused(text, "malformed")


def test_json_that_is_not_an_object_is_refused_as_malformed():
    assert "expected a JSON object" in refused(json.dumps([issue()]), "malformed")


@pytest.mark.parametrize(
    "field", ["format", "licensee", "issued", "expires", "features", "key_id", "signature"]
)
def test_licence_missing_a_field_is_refused_naming_the_field(field):
    doc = json.loads(issue())
    del doc[field]
    message = refused(json.dumps(doc), "malformed")
    assert f"missing field '{field}'" in message


def test_licence_with_an_unknown_field_is_refused_naming_it():
    message = refused(edited(issue(), seats=1000), "malformed")
    assert "unknown field 'seats'" in message


def test_licence_with_a_field_given_twice_is_refused():
    line = '  "licensee": "Acme Telecom",\n'
    text = issue().replace(line, line + '  "licensee": "Evil Corp",\n')
    assert text.count('"licensee"') == 2
    assert "'licensee' appears more than once" in refused(text, "malformed")


@pytest.mark.parametrize("value", ["2027-13-01", "22/11/2027", "20271122", "2027-11-22T00:00", 1])
def test_licence_with_a_bad_date_is_refused_naming_the_field(value):
    message = refused(edited(issue(), expires=value), "malformed")
    assert "field 'expires' must be a date YYYY-MM-DD" in message


def test_licence_expiring_before_it_was_issued_is_malformed():
    message = refused(edited(issue(), expires="2026-01-01"), "malformed")
    assert "'expires'" in message and "after 'issued'" in message


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("format", "billhive-license/2", "field 'format' must be 'billhive-license/1'"),
        ("licensee", "", "field 'licensee' must not be empty"),
        ("licensee", 42, "field 'licensee' must be a string"),
        ("features", [], "field 'features' must be a non-empty list"),
        ("features", "FT-3001.007", "field 'features' must be a non-empty list"),
        ("features", ["ft-3001.007"], "feature code 'ft-3001.007' is not valid"),
        ("features", ["BH-UNITS", "BH-UNITS"], "lists 'BH-UNITS' more than once"),
        ("key_id", "XYZ", "field 'key_id' must be 16 lower-case hex characters"),
        ("signature", "not base64!", "field 'signature' must be base64"),
        ("signature", base64.b64encode(b"short").decode(), "64-byte Ed25519 signature"),
    ],
)
def test_licence_with_a_bad_value_is_refused_naming_the_field(field, value, words):
    message = refused(edited(issue(), **{field: value}), "malformed")
    assert words in message


def test_parse_license_checks_structure_but_not_signature():
    forged = edited(issue(), licensee="Evil Corp")
    assert parse_license(forged)["licensee"] == "Evil Corp"
    with pytest.raises(LicenseError) as info:
        parse_license("{")
    assert info.value.reason == "malformed"


# --------------------------------------------------------------------------- errors


def test_licence_error_survives_pickling_for_task_queues():
    error = LicenseError("expired", "it expired on 2026-01-01")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, str(copy)) == ("expired", str(error))
    assert str(copy) == "licence refused (expired): it expired on 2026-01-01"


def test_licence_error_refuses_an_unknown_reason():
    with pytest.raises(ValueError):
        LicenseError("bored", "no reason")


# --------------------------------------------------------------------------- issuing


@pytest.mark.parametrize(
    ("overrides", "field_words"),
    [
        ({"licensee": ""}, "licensee must not be empty"),
        ({"licensee": "   "}, "licensee must not be empty"),
        ({"licensee": "Acme\nEvil"}, "licensee must be a single line"),
        ({"licensee": "A" * 201}, "licensee must be at most 200"),
        ({"features": []}, "features must list at least one"),
        ({"features": "FT-3001.007"}, "features must be a list"),
        ({"features": ["ft-3001.007"]}, "features: feature code 'ft-3001.007' is not valid"),
        ({"features": ["FT 3001"]}, "features: feature code 'FT 3001' is not valid"),
        ({"features": ["FT-3001."]}, "features: feature code 'FT-3001.' is not valid"),
        ({"features": ["BH-UNITS\n"]}, "features: feature code"),
        ({"features": [7]}, "features: feature code 7 is not a string"),
        ({"expires": ISSUED}, "expires (2026-11-22) must be after issued (2026-11-22)"),
        ({"expires": date(2026, 1, 1)}, "expires (2026-01-01) must be after issued"),
        ({"expires": "2027-11-22"}, "expires must be a date"),
        ({"expires": datetime(2027, 11, 22)}, "expires must be a date"),
        ({"issued": "2026-11-22"}, "issued must be a date"),
    ],
)
def test_issuing_with_bad_input_raises_value_error_naming_the_field(overrides, field_words):
    with pytest.raises(ValueError) as info:
        issue(**overrides)
    assert field_words in str(info.value)


def test_issuing_strips_the_licensee_and_drops_duplicate_features():
    lic = verify(
        issue(licensee="  Acme Telecom ", features=["BH-UNITS", "FT-3001.007", "BH-UNITS"])
    )
    assert lic.licensee == "Acme Telecom"
    assert lic.features == ("BH-UNITS", "FT-3001.007")


def test_issued_defaults_to_today():
    text = issue_license(VENDOR_PRIVATE, "Acme", ["BH-UNITS"], date.today() + timedelta(days=30))
    assert verify(text, today=date.today()).issued == date.today()


def test_issuing_refuses_a_key_that_is_not_an_ed25519_private_key():
    with pytest.raises(ValueError, match="private key"):
        issue(private=VENDOR_PUBLIC)
    with pytest.raises(ValueError, match="private key"):
        issue(private=b"not a key")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        issue(private=ec_pem)


# --------------------------------------------------------------------------- keys


def test_generated_keypair_is_pem_pkcs8_and_subject_public_key_info():
    private_pem, public_pem = generate_keypair()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (private_pem, public_pem) != (VENDOR_PRIVATE, VENDOR_PUBLIC)


def test_key_id_is_16_hex_chars_stable_and_distinct_per_key():
    kid = key_id(VENDOR_PUBLIC)
    assert len(kid) == 16 and all(c in "0123456789abcdef" for c in kid)
    assert key_id(VENDOR_PUBLIC) == kid
    assert key_id(OTHER_PUBLIC) != kid
    with pytest.raises(ValueError, match="private key"):
        key_id(VENDOR_PRIVATE)


def test_load_public_keys_reads_pem_files_that_then_verify(tmp_path):
    vendor = tmp_path / "vendor.pem"
    other = tmp_path / "other.pem"
    vendor.write_bytes(VENDOR_PUBLIC)
    other.write_bytes(OTHER_PUBLIC)
    keys = load_public_keys([str(vendor), str(other)])
    assert keys == [VENDOR_PUBLIC, OTHER_PUBLIC]
    assert verify(issue(private=OTHER_PRIVATE), trusted=keys).licensee == "Acme Telecom"
    assert load_public_keys([]) == []


def test_load_public_keys_names_a_missing_file(tmp_path):
    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(ValueError) as info:
        load_public_keys([missing])
    assert missing in str(info.value) and "does not exist" in str(info.value)


def test_load_public_keys_names_a_file_that_is_not_pem(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(ValueError) as info:
        load_public_keys([str(junk)])
    assert str(junk) in str(info.value) and "not a PEM public key" in str(info.value)


def test_load_public_keys_refuses_a_private_key_file(tmp_path):
    secret = tmp_path / "vendor.key"
    secret.write_bytes(VENDOR_PRIVATE)
    with pytest.raises(ValueError) as info:
        load_public_keys([str(secret)])
    assert str(secret) in str(info.value) and "private key" in str(info.value)


def test_load_public_keys_names_a_directory(tmp_path):
    with pytest.raises(ValueError) as info:
        load_public_keys([str(tmp_path)])
    assert str(tmp_path) in str(info.value)


def test_a_trusted_key_that_is_not_a_public_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="trusted public key #2"):
        verify(issue(), trusted=(VENDOR_PUBLIC, b"garbage"))
