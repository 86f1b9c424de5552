"""Shared fixtures of the psa_mapping tests: the plugin enabled and a FakeConnectWise."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.fakes.connectwise import FakeConnectWise


@pytest.fixture
def app(make_app):
    return make_app(plugins=["psa_mapping"])


@pytest.fixture
def fake():
    with FakeConnectWise() as server:
        yield server


@pytest.fixture
def cw(fake):
    """Two ConnectWise companies (one resembling Customer A), agreements, catalog items."""
    acme = fake.add_company("Customer A Holdings", "CustA")
    other = fake.add_company("Unrelated Ltd", "Unrel")
    agreement = fake.add_agreement(acme["id"], "Customer A Managed Services")
    fake.add_agreement(other["id"], "Unrelated MSA")
    fake.add_catalog_item("M365-BP", "Microsoft 365 Business Premium", Decimal("22.00"))
    fake.add_catalog_item("BACKUP-GB", "Cloud Backup per GB", Decimal("0.05"))
    return {"company": acme, "other": other, "agreement": agreement}


@pytest.fixture
def psa(ctx, world, install_license):
    """The plugin licensed and enabled; returns the host."""
    host = ctx.extensions["billhive"].host
    install_license(["BH-PSA"])
    host.set_enabled("psa_mapping", True)
    return host


def form_settings(fake, **overrides):
    values = {
        "site_url": fake.url,
        "company_id": fake.company_id,
        "public_key": fake.public_key,
        "private_key": fake.private_key,
        "client_id": fake.client_id,
        "timeout": "0.5",
        "max_retries": "1",
        "backoff": "0.01",
    }
    values.update(overrides)
    return values


def connect(account, fake, **overrides):
    from plugins.psa_mapping.service import integration as service

    return service.save_connection(None, account, form_settings(fake, **overrides))
