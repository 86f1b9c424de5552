"""Finding things (issue 20, item 1): the list query every list of the panel and the API
shares (``listing``: search, filters, sorting, paging, the same parameters and errors in
both), the five lists declared with it (``lists``: accounts, users, subscriptions, invoices,
the audit log), the panel's global search (``search``: accounts, invoices and the panel's
own sections) and their panel pages (``views``: the search box's answers, the users list).
"""
