"""Signed webhooks of issued invoices: an example third-party billing connector.

Installed as its own distribution (``billhive-webhook``), found through the entry point
``billhive.plugins: webhook = billhive_webhook``. It is only its client and its rules
(:mod:`billhive_webhook.webhook`); the core's connector runtime (``core.connectors``) keeps
its settings (the signing secret encrypted), the deliveries, the log and the retries, and
shows them on an account's Connectors page.
"""

from core.kit import BillingConnector, PluginMeta, hookimpl

from billhive_webhook import webhook

PLUGIN = PluginMeta(
    name="webhook",
    title="Invoice webhooks",
    version="1.0.0",
    api_version=1,
    description="Posts each issued invoice's lines as JSON to a URL, signed with HMAC-SHA256.",
)


@hookimpl
def register_billing_connectors():
    return [
        BillingConnector(
            "webhook",
            "Invoice webhook",
            webhook.Settings,
            test=webhook.test,
            push=webhook.push,
            items=webhook.items,
            session=webhook.session,
            clean=webhook.clean,
        )
    ]
