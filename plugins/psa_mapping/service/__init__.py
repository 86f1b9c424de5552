"""What the panel, the API, the CLI and the core's connector runtime call in psa_mapping.

* :mod:`.connectwise`  the ConnectWise Manage REST client (auth, retries, Retry-After,
  never-twice POSTs, reconciling duplicate additions)
* :mod:`.integration`  one account's ConnectWise integration: connection settings and their
  checks, the catalog, mappings, company links, and the mapping rules (what a mapping type
  and a Unique ID/Plan mean for an invoice's quantities)
* :mod:`.connector`    the ``connectwise`` billing connector the core runs
  (``core.registry.BillingConnector``): items, push, test, reconcile, report
"""
