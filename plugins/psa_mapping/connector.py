"""The ``connectwise`` billing connector (``register_billing_connectors``).

A connector is the generic face of the integration for code that holds plain data:
``test(settings)`` answers a sentence for a person, ``push(settings, invoice_document)``
pushes one invoice document and answers one outcome per mapped line. The panel, API and
sync of this plugin use the same ConnectWise client; ``push`` is for callers outside it.

``settings`` for ``push`` are the connection settings plus:

* ``agreement_id``: the ConnectWise agreement whose additions receive the quantities;
* ``customer_key``: a stable id of the customer (the Billhive account id);
* ``mappings``: ``[{"id", "product_code", "psa_product", "mapping_type", "level",
  "unique_id"}]``.
"""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from marshmallow import ValidationError, fields

from plugins.psa_mapping.connectwise import ConnectWiseError, ConnectWiseSettings
from plugins.psa_mapping.service import (
    ConnectionSettingsSchema,
    external_key,
    new_client,
    quantity_for,
    require_licensed,
    run_test,
)


class ConnectorSettings(ConnectionSettingsSchema):
    public_key = fields.String(required=True, load_only=True)
    private_key = fields.String(required=True, load_only=True)
    client_id = fields.String(required=True, load_only=True)


def _settings(data: dict) -> ConnectWiseSettings:
    try:
        loaded = ConnectorSettings().load(
            {k: v for k, v in (data or {}).items() if k in ConnectorSettings().fields}
        )
    except ValidationError as err:
        raise ValueError(f"invalid ConnectWise settings: {err.messages}") from None
    settings = ConnectWiseSettings(**loaded)
    problems = settings.validate()
    if problems:
        raise ValueError("invalid ConnectWise settings: " + "; ".join(problems.values()))
    return settings


def test(settings: dict) -> str:
    try:
        cw = _settings(settings)
    except ValueError as exc:
        return f"Connection failed: {exc}"
    return run_test(cw)[1]


def push(settings: dict, invoice_document: dict) -> list[dict]:
    require_licensed()  # a push is a sync: refused without BH-PSA (LicenseRequired)
    cw = _settings(settings)
    lines = [
        SimpleNamespace(
            product_code=str(line.get("product_code") or ""),
            quantity=str(line.get("quantity") or "0"),
            source=str(line.get("source") or ""),
        )
        for line in invoice_document.get("lines", [])
    ]
    outcomes = []
    with new_client(cw) as client:
        for m in settings.get("mappings", []):
            mapping = SimpleNamespace(
                product_code=m["product_code"],
                mapping_type=m.get("mapping_type", "per_unit"),
                unique_id=str(m.get("unique_id", "*")),
            )
            quantity = quantity_for(mapping, lines)
            if quantity is None:
                continue
            key = external_key(int(settings["customer_key"]), int(m["id"]))
            entry = {
                "mapping_id": m["id"],
                "product_code": m["product_code"],
                "quantity": str(quantity),
                "external_key": key,
            }
            try:
                outcome, addition = client.upsert_addition(
                    int(settings["agreement_id"]),
                    m["psa_product"],
                    Decimal(quantity),
                    key,
                    level=int(m.get("level", 0)),
                )
            except ConnectWiseError as exc:
                entry.update(outcome="failed", message=exc.message)
            else:
                entry.update(outcome=outcome, addition_id=addition.get("id"), message="")
            outcomes.append(entry)
    return outcomes
