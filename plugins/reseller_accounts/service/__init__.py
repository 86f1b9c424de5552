"""The reseller_accounts domain: what the panel (``views``), the API (``api``) and the hooks
call.

* :mod:`.profile` -- the Reseller Profile schema (customer invoicing, Billing Cycle);
* :mod:`.resellers` -- reseller rules: the parent check, the provider's sub-reseller setting,
  queries scoped by ``core.rbac``, profile edits and the customers following its Billing Cycle;
* :mod:`.billing` -- cascading billing: the invoice options of a reseller issuer and the
  wholesale lines on a reseller's invoice.
"""
