"""Invoicing: an invoice from draft to issued, paid, void or credited, and what it is made of.

* :mod:`.lifecycle`: drafts, issuing (gap-free numbers per issuer and kind), paying, voiding,
  credit notes; every status change a guarded row.
* :mod:`.tax`: the one tax rule (reverse charge, the buyer's rate).
* :mod:`.parties`: billing details, an issuer's payment instructions, what an issued invoice
  keeps of both.
* :mod:`.documents`: the invoice as plain data, what every invoice format renders.
* :mod:`.raw`: the RAW format (CSV a machine reads back exactly).
* :mod:`.storage`: rendered files, written once, recorded, served.
"""
