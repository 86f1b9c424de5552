"""Secret connector settings encrypted at rest (Fernet, from ``cryptography``).

The key is kept like the instance's secret key (``hostapp.config``): the environment
variable ``BILLHIVE_CONNECTOR_KEY`` (a Fernet key, ``python -c "from cryptography.fernet
import Fernet; print(Fernet.generate_key().decode())"``) or else the file ``connector_key``
of the data folder, written on first start. Losing it makes stored secrets unreadable:
they are then asked for again, never guessed.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from core.errors import BillhiveError


class SecretsUnreadable(BillhiveError):
    status = 502
    code = "connector_secrets_unreadable"


def fernet(key: str | bytes | None = None) -> Fernet:
    key = key if key is not None else current_app.config["CONNECTOR_KEY"]
    return Fernet(key.encode() if isinstance(key, str) else key)


def encrypt(values: dict[str, str], key: str | bytes | None = None) -> str:
    """One token holding every secret value (``""`` when there is none)."""
    if not values:
        return ""
    return fernet(key).encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt(token: str, title: str = "connector") -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()).decode())
    except InvalidToken:
        raise SecretsUnreadable(
            f"the stored {title} secrets cannot be read (the instance's connector key "
            "changed): enter them again"
        ) from None


def mask(value: str) -> str:
    """A secret for display: the last 4 characters at most, the rest as dots."""
    value = value or ""
    if not value:
        return ""
    shown = value[-4:] if len(value) >= 12 else ""
    return "••••••" + shown
