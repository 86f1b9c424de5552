"""The dashboard's alerts from a plugin: psa_mapping answers ``dashboard_alerts`` with the
failed sync items of the connections in the user's subtree (issue 20, item 2)."""

from __future__ import annotations

from tests import test_psa_support as support

app = support.app
psa = support.psa


def _failed_item(owner, customer, message):
    from core.connectors.models import SyncItem, SyncRun

    run = SyncRun.create(account=owner, connector="connectwise", trigger="cli", status="failed",
                         message=message)  # fmt: skip
    return SyncItem.create(account=owner, connector="connectwise", customer=customer, run=run,
                           invoice_id=7, key="m1", product_code="M365", remote_product="M365-BP",
                           quantity="3",
                           external_key=f"k-{customer.id}", outcome="failed",
                           message=message)  # fmt: skip


def test_failed_psa_syncs_show_on_the_dashboard_of_the_connection_owner(psa, world, ctx, panel):
    from core import dashboard

    _failed_item(world.provider, world.customer_a, "agreement 12 is closed")
    with ctx.test_request_context():
        found = {a.title: a for a in dashboard.alerts(world.operator)}
        assert found["Failed PSA syncs"].count == 1
        assert "agreement 12 is closed" in found["Failed PSA syncs"].lines[0]
        assert found["Failed PSA syncs"].url == f"/accounts/{world.provider.id}/psa/sync"
        # a customer below sees nothing of the provider's connection (nor holds psa.view)
        assert "Failed PSA syncs" not in {a.title for a in dashboard.alerts(world.user_a)}
    page = panel(world.operator).get(f"/accounts/{world.provider.id}").get_data(as_text=True)
    assert 'data-alert="Failed PSA syncs"' in page
    # disabled: its hook is not asked, its alert goes away, its data stays
    psa.set_enabled("psa_mapping", False)
    with ctx.test_request_context():
        assert "Failed PSA syncs" not in {a.title for a in dashboard.alerts(world.operator)}
