"""Invoicing: an invoice from draft to issued, paid, void or credited, and what it is made of.

* :mod:`.lifecycle`: drafts, issuing, paying, voiding, credit notes (every status change a
  guarded row) and the due date (:func:`~.lifecycle.due_date_for`, the one rule).
* :mod:`.status`: the guarded status change (:func:`~.status.transition`) and the locks it
  takes, which the ledger uses too (it marks a settled invoice paid).
* :mod:`.numbering`: gap-free numbers per issuer and document kind.
* :mod:`.tax`: the one tax rule (reverse charge, the buyer's rate).
* :mod:`.parties`: billing details, an issuer's payment instructions, what an issued invoice
  keeps of both.
* :mod:`.documents`: the invoice as plain data, what every invoice format renders.
* :mod:`.raw`: the RAW format (CSV a machine reads back exactly).
* :mod:`.storage`: rendered files, written once, recorded, served.
"""
