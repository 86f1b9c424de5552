"""The core's own events: how billing tells e-mail (and the worker queue tells its task
modules) that something happened, without importing the layer above it.

Billing (:mod:`core.billing`) sits below e-mail (:mod:`core.mail`): mail reads invoices and
payments, billing never imports mail. When billing has news for it, it calls :func:`emit`; the
listeners a higher module registered with :func:`listen` when it was imported (core.mail's
when the application is built, :mod:`hostapp.app`) run in registration order, where the
caller emits, and their exceptions reach the caller, which decides whether one is fatal. An
event with no listener (a bare script that never built the app) does nothing. Plugins are
told through their hooks (:mod:`core.hookspecs`), not these.

The events (their arguments; when):

* ``invoice_finalized`` (invoice): an invoice or credit note was committed as issued (after
  the commit, before the plugins' ``invoice_finalized`` hook)
* ``payment_recorded`` (payment, actor): a payment was recorded (in its transaction)
* ``dunning_reminder`` (invoice, level, event_key=, context=): a dunning step's reminder
  is due (after the step's commit; a failure is recorded on the step)
* ``worker_sweep`` (): the worker's periodic sweep, after the bill runs' (in a task)
"""

from __future__ import annotations

from collections.abc import Callable

EVENTS = ("invoice_finalized", "payment_recorded", "dunning_reminder", "worker_sweep")

_listeners: dict[str, list[Callable]] = {event: [] for event in EVENTS}


def listen(event: str, listener: Callable) -> Callable:
    """Call ``listener`` on each :func:`emit` of ``event`` (once, however often registered)."""
    if event not in _listeners:
        raise ValueError(f"unknown core event '{event}' (one of {', '.join(EVENTS)})")
    if listener not in _listeners[event]:
        _listeners[event].append(listener)
    return listener


def emit(event: str, *args, **kwargs) -> None:
    """Call the listeners of ``event``; an exception of one stops the others and is raised."""
    for listener in list(_listeners[event]):
        listener(*args, **kwargs)
