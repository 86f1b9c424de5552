"""Billing: what is sold, what is owed, and the invoices in between. A map, by domain:

Foundations (this package's top level; every domain below uses them, they use none of them):

* :mod:`~core.billing.models`: the billing tables.
* :mod:`~core.billing.money`: integer minor units, Decimal maths, one rounding rule.
* :mod:`~core.billing.periods`: billing periods on a bill cycle day, proration ratios.
* :mod:`~core.billing.catalog`: products, price plans, subscriptions, usage (validated writes).
* :mod:`~core.billing.coverage`: which service days are invoiced already (each day once).
* :mod:`~core.billing.rating`: the only place proration, volume tiers and one-off charges are
  priced (bill runs and reseller wholesale).
* :mod:`~core.billing.demo`: the demo's billing data.

Domains (one package each; a package's docstring says what it owns):

* :mod:`core.billing.invoicing`: an invoice from draft to paid or void: lifecycle and
  numbering, tax, the parties, the invoice as data, rendered and stored files.
* :mod:`core.billing.ledger`: what an account owes and paid: ledger entries, payments,
  statements, dunning, activity reports.
* :mod:`core.billing.runs`: bill runs: the engine, the worker queue, run records and resume.

Edges (they call the domains, never the other way round):

* :mod:`core.billing.web`: the REST API blueprints, the panel pages and their templates.
* :mod:`core.billing.cli`: ``billhive bill-run``, ``usage import``, ``invoices``.
"""
