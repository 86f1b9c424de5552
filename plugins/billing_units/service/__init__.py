"""The billing_units domain: what the panel (``views``), the API (``api``) and the CLI (``cli``)
call; every change validates, writes and audits here, in one transaction.

* :mod:`.units` -- phone numbers, teams, billing units and their settings, rated call records,
  the estimate of unbilled days and the unit lines of a bill run (``charges_for_period``);
* :mod:`.recording` -- call-recording storage records and the retention setting (billed as
  core usage);
* :mod:`.report` -- the invoiced report per unit, its CSV, and the Call recording page's data.

Each module imports only those listed before it.
"""
