"""The web edge of billing: REST API blueprints (``*api.py``), panel pages (``*views.py``)
and their templates (``templates/billing/``). Handlers turn requests into calls of the
domain packages (:mod:`core.billing.invoicing`, :mod:`core.billing.ledger`,
:mod:`core.billing.runs`) and answers; the rules live there, never here.

The CLI is not here but at :mod:`core.billing.cli`: it is the other edge (a terminal, not
HTTP), it shares nothing with the blueprints, and ``billhive --help`` users look for it
beside the domains it drives.
"""
