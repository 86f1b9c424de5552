"""First start of an instance: the provider account and its first operator."""

from __future__ import annotations

from core import accounts, users
from core.models import Account, Role, User


def initialise(provider_name: str, email: str, password: str, currency: str = "EUR"):
    """Idempotent: returns (provider, operator, created)."""
    provider = Account.get_or_none(Account.parent.is_null())
    if provider is not None:
        operator = User.get_or_none(User.email == email.strip().lower())
        return provider, operator, False
    provider = accounts.create_account(
        None, {"name": provider_name, "type": "provider", "currency": currency}
    )
    full = Role.get(Role.account == provider, Role.default_code == "full_access")
    operator = users.create_user(
        None,
        {
            "email": email,
            "password": password,
            "name": "Operator",
            "account_id": provider.id,
            "role_ids": [full.id],
        },
    )
    return provider, operator, True
