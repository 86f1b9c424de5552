"""A plugin that fails to import."""

raise ImportError("the notes backend library is missing")
