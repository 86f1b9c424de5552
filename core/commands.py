"""What a ``billhive`` command runs in: the instance's app, with a database connection.

The ``billhive`` CLI (``hostapp.cli``) builds the instance's app from its configuration and
hands this module the way to get it (:func:`use_app`); the core's commands and the plugins'
(``register_commands``) never import the CLI. A command's body wrapped in :func:`with_app`, or
every command of an :class:`AppGroup`, runs inside that app's context with a database
connection, the enabled plugins refreshed, and a :class:`~core.errors.BillhiveError` shown as
one line (``Error: ...``, status 1) instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps

import click
from flask import Flask

from core.billing.periods import PeriodError, parse_date
from core.errors import BillhiveError

_get_app: Callable[[], Flask] | None = None


def use_app(get_app: Callable[[], Flask]) -> None:
    """Where commands find the instance's app (``hostapp.cli`` builds it on first use)."""
    global _get_app  # one CLI process serves one instance
    _get_app = get_app


def current() -> Flask:
    """The instance's app of this command."""
    if _get_app is None:
        raise RuntimeError("no Billhive app: run commands through the billhive CLI")
    return _get_app()


def with_app(fn):
    """Run ``fn`` inside the app and a database connection; errors become messages."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        app = current()
        state = app.extensions["billhive"]
        with app.app_context(), state.database.connection_context():
            state.host.refresh()
            try:
                return fn(*args, **kwargs)
            except BillhiveError as exc:
                raise click.ClickException(exc.message) from None

    return wrapper


class AppGroup(click.Group):
    """A command group whose commands run :func:`with_app` (like Flask's ``AppGroup``)::

    widgets = AppGroup("widgets", help="Widgets: ...")

    @widgets.command("count")
    def count():
        click.echo(Widget.select().count())
    """

    def command(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @group.command, bare
            return super().command()(with_app(args[0]))
        wrap = super().command(*args, **kwargs)
        return lambda fn: wrap(with_app(fn))

    def group(self, *args, **kwargs):
        """A sub-group is an :class:`AppGroup` too, so its commands run with the app."""
        kwargs.setdefault("cls", AppGroup)
        return super().group(*args, **kwargs)


def parse_day(value: str, option: str) -> date:
    """A ``YYYY-MM-DD`` option value; anything else is a usage error naming ``option``."""
    try:
        return parse_date(value, option)
    except PeriodError as exc:
        raise click.BadParameter(str(exc)) from None
