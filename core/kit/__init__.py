"""The plugin API: everything a Billhive plugin may import lives in ``core.kit`` and its submodules.

``core.kit.testing``
    pytest fixtures for plugin authors (``pytest_plugins = ["core.kit.testing"]``).
"""
