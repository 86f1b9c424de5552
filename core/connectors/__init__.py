"""Billing connectors: pushing issued invoices to outside systems (a PSA, a webhook ...).

A plugin declares a :class:`core.registry.BillingConnector` (``register_billing_connectors``);
this package owns everything around it, so a connector is only its client and its rules:

* :mod:`core.connectors.models`   the tables: settings per account and connector, product
  mappings, customer links, sync runs and sync items (the log)
* :mod:`core.connectors.secrets`  encryption of secret settings at rest (Fernet; the key is
  kept like the secret key: ``BILLHIVE_CONNECTOR_KEY`` or the data folder's
  ``connector_key``)
* :mod:`core.connectors.settings` saving, testing and showing settings (secrets masked)
* :mod:`core.connectors.sync`     the items of an issued invoice, pushing them, retries,
  "superseded" and "uncertain" rules, runs; the push after ``invoice_finalized``
* :mod:`core.connectors.views`, :mod:`core.connectors.api`  the Connectors page of an
  account (settings, sync log, retry) and its JSON API
* :mod:`core.connectors.migrations`  moving data of the former psa_mapping tables here

Every function taking an ``actor`` checks privileges and scoping through ``core.rbac``
(outside the caller's subtree = 404); ``actor=None`` is the operator's shell (CLI, hooks).
"""
