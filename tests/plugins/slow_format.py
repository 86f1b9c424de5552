"""Test plugin: an invoice format ("SLOW", plain text) whose rendering takes a while or fails,
to kill a worker while it renders or to see a render failure reported.

Mode from ``MODE`` (in-process tests) or the environment (subprocess tests):
``BILLHIVE_TEST_RENDER=sleep:0.3`` / ``raise`` / ``ok``.
"""

from __future__ import annotations

import os
import time

from core import hookimpl
from core.registry import InvoiceFormat, PluginMeta

PLUGIN = PluginMeta(name="slow_format", title="Slow format", version="1.0")
MODE: str | None = None


def render(document: dict) -> bytes:
    mode = MODE or os.environ.get("BILLHIVE_TEST_RENDER", "ok")
    if mode == "raise":
        raise RuntimeError("the printer is out of toner")
    if mode.startswith("sleep:"):
        time.sleep(float(mode.split(":", 1)[1]))
    return f"invoice {document.get('number', '?')}".encode()


@hookimpl
def register_invoice_formats():
    return [InvoiceFormat("SLOW", "Slow text", "text/plain", "txt", render)]
