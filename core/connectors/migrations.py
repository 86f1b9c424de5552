"""Core migration 8: the psa_mapping plugin's own tables become the core's connector tables.

Existing installs keep their ConnectWise settings, mappings, company links, sync runs and
items: each row is copied (ids kept, so items still name their run and mapping), the keys
decrypted with the plugin's former key (derived from the instance's secret key) and
encrypted again with the connector key (:mod:`core.connectors.secrets`), then the old tables
are dropped. Keys that cannot be read (the secret key changed meanwhile) are left out: the
connection asks for them again, as it did before. A database without those tables (a new
install) has nothing to move.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from core.connectors import secrets
from core.connectors.models import (
    ConnectorLink,
    ConnectorMapping,
    ConnectorSettings,
    SyncItem,
    SyncRun,
)
from core.db import is_postgres

CODE = "connectwise"
OLD_TABLES = ("sync_item", "sync_run", "company_link", "psa_mapping", "psa_connection")


def _rows(db, table: str) -> list[dict]:
    cursor = db.execute_sql(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - fixed names
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _old_fernet() -> Fernet:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"billhive-psa:" + secret).digest()))


def _old_secrets(row: dict) -> dict[str, str]:
    old = _old_fernet()
    try:
        return {
            name: old.decrypt(row[f"{name}_enc"].encode()).decode()
            for name in ("public_key", "private_key", "client_id")
        }
    except InvalidToken:
        return {}


def _json(value) -> dict:
    return json.loads(value) if isinstance(value, str) else (value or {})


def move_psa_mapping(migrator, db) -> None:
    present = [t for t in OLD_TABLES if db.table_exists(t)]
    if not present:
        return
    key = current_app.config["CONNECTOR_KEY"]
    if "psa_connection" in present:
        for row in _rows(db, "psa_connection"):
            ConnectorSettings.insert(
                account=row["account_id"],
                connector=CODE,
                values={
                    "site_url": row["site_url"],
                    "company_id": row["company_id"],
                    "timeout": float(row["timeout"]),
                    "max_retries": int(row["max_retries"]),
                    "backoff": float(row["backoff"]),
                },
                secrets=secrets.encrypt(_old_secrets(row), key),
                last_test_at=row["last_test_at"],
                last_test_ok=row["last_test_ok"],
                last_test_message=row["last_test_message"],
                updated_at=row["updated_at"],
                updated_by=row["updated_by_id"],
            ).execute()
    if "psa_mapping" in present:
        for row in _rows(db, "psa_mapping"):
            ConnectorMapping.insert(
                id=row["id"],
                account=row["account_id"],
                connector=CODE,
                product_code=row["product_code"],
                mapping_type=row["mapping_type"],
                remote_product=row["psa_product"],
                remote_product_name=row["psa_product_name"],
                unique_id=row["unique_id"],
                level=row["level"],
                source=row["source"],
                created_at=row["created_at"],
                created_by=row["created_by_id"],
            ).execute()
    if "company_link" in present:
        for row in _rows(db, "company_link"):
            ConnectorLink.insert(
                id=row["id"],
                account=row["account_id"],
                connector=CODE,
                customer=row["customer_id"],
                remote_id=row["psa_company_id"],
                remote_name=row["psa_company_name"],
                remote_identifier=row["psa_company_identifier"],
                target_id=row["agreement_id"],
                target_name=row["agreement_name"],
                suggested_at=row["suggested_at"],
                confirmed_at=row["confirmed_at"],
                confirmed_by=row["confirmed_by_id"],
            ).execute()
    if "sync_run" in present:
        for row in _rows(db, "sync_run"):
            SyncRun.insert(
                id=row["id"],
                account=row["account_id"],
                connector=CODE,
                trigger=row["trigger"],
                invoice_id=row["invoice_id"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                status=row["status"],
                message=row["message"],
                counts=_json(row["counts"]),
            ).execute()
    if "sync_item" in present:
        for row in _rows(db, "sync_item"):
            SyncItem.insert(
                id=row["id"],
                account=row["account_id"],
                connector=CODE,
                customer=row["customer_id"],
                run=row["run_id"],
                mapping=row["mapping_id"],
                invoice_id=row["invoice_id"],
                key=f"m{row['mapping_id']}" if row["mapping_id"] else f"i{row['id']}",
                product_code=row["product_code"],
                remote_product=row["psa_product"],
                unique_id=row["unique_id"],
                level=row["level"],
                quantity=row["quantity"],
                target_id=row["agreement_id"],
                external_key=row["external_key"],
                outcome=row["outcome"],
                message=row["message"],
                remote_id=row["addition_id"],
                attempts=row["attempts"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            ).execute()
    if is_postgres():
        for model in (ConnectorMapping, ConnectorLink, SyncRun, SyncItem):
            table = model._meta.table_name
            db.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
    for table in present:  # items first: they point at runs and mappings
        db.execute_sql(f"DROP TABLE {table}")
