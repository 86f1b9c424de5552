"""Demo data: a provider, resellers and customers, a user per level, a demo licence.

Idempotent: running it again changes nothing that is already there.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from core import accounts, license_store, users
from core.bootstrap import initialise
from core.licenses import generate_keypair, issue_license, verify_license
from core.models import Account, Role, User

PASSWORD = "billhive-demo-2026"  # meets the password policy (core.passwords)
OPERATOR = "operator@demo.billhive.test"


def _key_pair(data_dir: Path) -> bytes:
    """The demo's licence signing key; its public half goes where the instance trusts keys."""
    private = data_dir / "demo-license-private.pem"
    public = data_dir / "license-keys" / "demo.pem"
    if not private.exists() or not public.exists():
        public.parent.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_keypair()
        private.write_bytes(private_pem)
        private.chmod(0o600)
        public.write_bytes(public_pem)
    return private.read_bytes()


def _account(parent: Account, name: str, type_code: str, **extra) -> Account:
    existing = Account.get_or_none(Account.parent == parent, Account.name == name)
    if existing is not None:
        return existing
    return accounts.create_account(
        None, {"name": name, "type": type_code, "parent_id": parent.id, **extra}
    )


def _user(account: Account, email: str, name: str, role_code: str = "full_access") -> str:
    if User.get_or_none(User.email == email) is None:
        role = Role.get(Role.account == account, Role.default_code == role_code)
        users.create_user(
            None,
            {
                "email": email,
                "password": PASSWORD,
                "name": name,
                "account_id": account.id,
                "role_ids": [role.id],
            },
        )
    return email


def load_demo(app, echo=print) -> list[tuple[str, str]]:
    host = app.extensions["billhive"].host
    data_dir = Path(app.config["DATA_DIR"])
    provider, _, _ = initialise("Billhive Demo Provider", OPERATOR, PASSWORD, "EUR")
    logins = [("provider", OPERATOR)]

    features = sorted(
        {p.meta.license_feature for p in host.plugins.values() if p.meta.license_feature}
    )
    lic, problem = license_store.current(host.license_key_paths)
    if lic is None or not all(lic.covers(f) for f in features):
        text = issue_license(
            _key_pair(data_dir),
            "Billhive demo",
            features or ["DEMO"],
            date.today() + timedelta(days=365),
        )
        verify_license(text, license_store.trusted_keys(host.license_key_paths), date.today())
        license_store.install(text, host.license_key_paths)
        echo(f"Installed a demo licence covering: {', '.join(features) or 'no add-ons'}")
    for name in sorted(host.plugins):
        if not host.plugins[name].meta.essential and host.set_enabled(name, True):
            echo(f"Enabled plugin {name}")

    types = host.account_types()
    demo_accounts = [provider]
    if "reseller" in types:
        reseller = _account(
            provider,
            "Northwind Reseller",
            "reseller",
            bill_cycle_day=1,
            profile={
                "customer_invoice_creation": True,
                "customer_invoice_type": "PDF",
                "customer_billing_cycle_day": 15,
            },
        )
        logins.append(("reseller", _user(reseller, "reseller@demo.billhive.test", "Rita Reseller")))
        if reseller.tax_rate in ("", "0"):  # Austrian VAT on what it sells in Austria
            Account.update(tax_rate="20").where(Account.id == reseller.id).execute()
        retail = _account(reseller, "Fabrikam Retail", "customer", bill_cycle_day=15)
        _user(retail, "fabrikam@demo.billhive.test", "Frank Fabrikam")
        demo_accounts += [reseller, retail]
    customer = _account(provider, "Contoso Ltd", "customer", bill_cycle_day=1, tax_rate="20")
    logins.append(("customer", _user(customer, "customer@demo.billhive.test", "Carla Customer")))
    from core.billing.demo import load_billing_demo, load_dunning_demo, load_parties_demo

    load_parties_demo([Account.get_by_id(a.id) for a in demo_accounts + [customer]], echo)
    load_billing_demo(provider, customer, echo)
    load_dunning_demo(provider, customer, echo)
    if app.config.get("MAIL_TRANSPORT", "outbox") == "outbox":
        echo(f"E-mail goes to the outbox folder {app.config['MAIL_OUTBOX_DIR']} (Outbox in the "
             "panel): `billhive bill-run` puts the invoices there")  # fmt: skip
    return logins
