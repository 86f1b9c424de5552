"""The panel shell: login, navigation from the menu hook, accounts, users, plugins & licence.

:mod:`.views` holds the blueprint and the core's pages; :mod:`.jinja` the menu, tabs,
breadcrumbs and form fields every page (plugins' too) renders with; :mod:`.forms` and
:mod:`.filters` the form errors and template filters."""
