"""Helpers for the billing tests: a catalog, subscriptions and usage in a few calls."""

from __future__ import annotations

from core.billing import catalog


def setup_catalog(owner, currency="EUR", price="30.00", rate="0.10", tiers=None, kind="recurring",
                  code="HOST"):  # fmt: skip
    product = catalog.create_product(
        None,
        {
            "account_id": owner.id,
            "code": code,
            "name": "Hosting",
            "unit": "seat",
            "kind": kind,
        },  # fmt: skip
    )
    plan = catalog.create_plan(
        None,
        {
            "product_id": product.id,
            "name": "Standard",
            "currency": currency,
            "recurring_price": price,
            "usage_rate": rate,
            "tiers": tiers,
        },
    )
    return product, plan


def subscribe(account, plan, start="2026-01-01", quantity="1", end=None):
    return catalog.create_subscription(
        None,
        {
            "account_id": account.id,
            "plan_id": plan.id,
            "quantity": quantity,
            "start": start,
            "end": end,
        },  # fmt: skip
    )


def usage(sub, quantity, day, external_id):
    good, bad = catalog.check_usage(
        [
            {
                "subscription_id": sub.id,
                "quantity": quantity,
                "date": day,
                "external_id": external_id,
            }
        ]  # fmt: skip
    )
    assert not bad, bad
    return catalog.insert_usage(good)


def set_tax(account, rate):
    from core.models import Account

    Account.update(tax_rate=rate).where(Account.id == account.id).execute()
    return Account.get_by_id(account.id)


def reseller_tree(world, ctx, install_license):
    """The world's provider and customers A and B, plus a reseller (profile: customer invoices
    in RAW, Billing Cycle day 1) with its admin, and the reseller's end customer with its user;
    reseller_accounts licensed and enabled. Returns ``world`` with those attributes set."""
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    world.reseller = world.add_account(world.provider, "Acme Reseller", "reseller",
                                       profile=dict(RESELLER_PROFILE))  # fmt: skip
    world.reseller_admin = world.add_user(world.reseller, "admin@acme.example")
    world.end_customer = world.add_account(world.reseller, "End Customer")
    world.end_user = world.add_user(world.end_customer, "end@customer.example")
    world.app = ctx
    return world


RESELLER_PROFILE = {"customer_invoice_creation": True, "customer_invoice_type": "RAW",
                    "customer_billing_cycle_day": 1}  # fmt: skip
