"""The ledger: what an account owes and what it paid.

* :mod:`.entries`: the append-only ledger entries, balances, credit drawn by invoices.
* :mod:`.payments`: payments, refunds, reversals, prepaid top-ups, payment settings and methods.
* :mod:`.statements`: account statements (data, CSV, PDF).
* :mod:`.dunning`: chasing overdue invoices in levels, late fees, pauses.
* :mod:`.reports`: activity reports (usage and charges by product and month).
"""
