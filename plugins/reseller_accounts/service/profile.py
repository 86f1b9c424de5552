"""The Reseller Profile (FT-3001.007): what a reseller's customer invoicing looks like.

The schema drives validation (core.accounts.validate_profile on create and update, errors
named ``profile.<field>``) and the panel's generic account form (labels, help, choices).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

INVOICE_TYPES = ("RAW", "PDF", "BOTH")
INVOICE_TYPE_LABELS = ("RAW", "PDF", "Both (RAW & PDF)")
FORMATS_OF = {"RAW": ("RAW",), "PDF": ("PDF",), "BOTH": ("RAW", "PDF")}


class ResellerProfile(Schema):
    customer_invoice_creation = fields.Boolean(
        required=True,
        metadata={
            "label": "Customer Invoice Creation",
            "description": "Whether invoices are created for this reseller's customers.",
        },
    )
    customer_invoice_type = fields.String(
        required=True,
        validate=validate.OneOf(
            INVOICE_TYPES,
            labels=INVOICE_TYPE_LABELS,
            error="must be one of RAW, PDF, BOTH (Both (RAW & PDF)); got {input!r}",
        ),
        metadata={
            "label": "Customer Invoice Type",
            "description": "Type of the created customer invoices: RAW, PDF or both.",
        },
    )
    customer_billing_cycle_day = fields.Integer(
        required=True,
        strict=False,
        validate=validate.Range(
            min=1, max=28, error="must be a whole number from 1 to 28 (got {input})"
        ),
        error_messages={"invalid": "must be a whole number from 1 to 28"},
        metadata={
            "label": "Billing Cycle",
            "description": (
                "Day of the month (1-28) on which billing of this reseller's customers starts. "
                "It may be the same as or different from the reseller account's own bill "
                "cycle day; its customers' bill cycle day follows it."
            ),
        },
    )


def formats_for(profile: dict) -> tuple[str, ...]:
    return FORMATS_OF.get((profile or {}).get("customer_invoice_type", "PDF"), ("PDF",))
