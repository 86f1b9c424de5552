"""The ``billhive`` command line: operators' tool for an instance."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from core import commands
from core.billing.cli import bill_run, dunning, invoices, usage
from core.commands import parse_day, with_app
from core.current import host
from core.mail.cli import mail
from hostapp.scaffold import new_plugin

_app = None


class DatabaseUnreachable(Exception):
    """The configured database cannot be opened; the message names it (password masked)."""


def _masked(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{userinfo}:***@{netloc[2]}").geturl()


# what the drivers say when the database cannot be opened (not when a statement fails)
_CANNOT_OPEN = (
    "unable to open database file",  # sqlite3: no such folder, no permission
    "connection to server",  # psycopg2: refused, timed out, closed
    "could not connect",
    "could not translate host name",
    "authentication failed",
    "does not exist",  # database "x" does not exist / role "x" does not exist
    "timeout expired",
)


def _unreachable_cause(exc: BaseException) -> str | None:
    """The driver's reason when ``exc`` says the database could not be opened, else None."""
    import peewee as pw

    seen = exc
    while seen is not None:
        driver = type(seen).__module__.split(".")[0] in ("psycopg2", "sqlite3")
        if isinstance(seen, (pw.OperationalError, pw.InterfaceError)) or (
            driver and type(seen).__name__ == "OperationalError"
        ):
            text = " ".join(str(seen).split())  # psycopg2 spreads its reason over lines
            if any(marker in text for marker in _CANNOT_OPEN):
                return text
        seen = seen.__cause__ or seen.__context__
    return None


def _build_app():
    from hostapp.app import create_app
    from hostapp.config import database_url

    try:
        return create_app()
    except Exception as exc:
        cause = _unreachable_cause(exc)
        if cause is None:
            raise
        raise DatabaseUnreachable(
            f"cannot open the database {_masked(database_url())}: {cause}"
        ) from exc


def get_app():
    """The instance's app. A database that cannot be opened ends the command with one line
    on stderr and status 2 (the traceback with BILLHIVE_DEBUG=1)."""
    global _app  # the CLI is one process serving one instance; tests build apps themselves
    if _app is None:
        try:
            _app = _build_app()
        except DatabaseUnreachable as exc:
            if os.environ.get("BILLHIVE_DEBUG") == "1":
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
    return _app


commands.use_app(get_app)


class BillhiveCLI(click.Group):
    """Core commands plus those of enabled plugins (``register_commands``)."""

    def _plugin_commands(self, listing: bool = False) -> dict:
        global _app
        if listing and _app is None:
            # --help lists commands: it opens an instance that exists, and creates nothing
            from hostapp.config import instance_exists

            if not instance_exists():
                return {}
            try:
                _app = _build_app()
            except Exception:  # noqa: BLE001 - a broken instance still gets core commands
                return {}
        try:
            app = get_app()
        except Exception:  # noqa: BLE001 - a broken instance still gets core commands
            return {}
        database = app.extensions["billhive"].database
        with app.app_context(), database.connection_context():
            hosted = app.extensions["billhive"].host
            hosted.refresh()
            return {c.name: c for cmds in hosted.call("register_commands") for c in cmds}

    def list_commands(self, ctx):
        names = set(super().list_commands(ctx))
        if not ctx.resilient_parsing:
            names |= set(self._plugin_commands(listing=True))
        return sorted(names)

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._plugin_commands().get(name)


@click.group(cls=BillhiveCLI)
def main():
    """Billhive: billing management for service providers and their resellers.

    Configuration comes from BILLHIVE_DATABASE_URL, BILLHIVE_DATA_DIR, BILLHIVE_SECRET_KEY
    and BILLHIVE_LICENSE_KEYS.
    """


# -- init, demo, run -------------------------------------------------------------------------


@main.command()
@click.option("--operator-email", prompt=True, help="E-mail of the first operator.")
@click.option(
    "--operator-password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Password of the first operator (12 characters at least; common ones refused).",
)
@click.option("--provider-name", default="Provider", show_default=True)
@click.option("--currency", default="EUR", show_default=True)
@with_app
def init(operator_email, operator_password, provider_name, currency):
    """Create the database, the provider account and the first operator."""
    from core.bootstrap import initialise

    provider, operator, created = initialise(
        provider_name, operator_email, operator_password, currency
    )
    if created:
        click.echo(f"Initialised: provider '{provider.name}', operator {operator.email}.")
    else:
        click.echo(f"Already initialised: provider '{provider.name}'. Nothing changed.")


@main.command()
@with_app
def demo():
    """Fill an instance with demo data (idempotent) and print the logins."""
    from hostapp.demo import PASSWORD, load_demo

    logins = load_demo(get_app(), click.echo)
    click.echo(f"\nDemo logins (password for all: {PASSWORD}):")
    for level, email in logins:
        click.echo(f"  {level:<10} {email}")


def gunicorn_argv(bind_host: str, port: int, workers: int) -> list[str]:
    """gunicorn serving hostapp.wsgi:app with ``workers`` sync workers. The app is loaded
    once before forking (--preload: tables are checked by one process, not raced by N);
    the control socket (gunicorn >= 25) is off so several instances can share a host."""
    from gunicorn.config import KNOWN_SETTINGS

    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"{bind_host}:{port}",
            "--preload"]  # fmt: skip
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")
    return [*argv, "hostapp.wsgi:app"]


@main.command()
@click.option("--host", "bind_host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=0, type=int, help="Serve with gunicorn and N workers.")
def run(bind_host, port, workers):
    """Serve the panel and the API."""
    app = get_app()  # the database is reachable (else one line and status 2) before serving
    click.echo(f"Billhive panel: http://{bind_host}:{port}/   (API: /api/v1, Ctrl+C stops)")
    if workers:
        app.extensions["billhive"].database.close()
        os.execvp(sys.executable, gunicorn_argv(bind_host, port, workers))
    app.run(host=bind_host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--workers", default=2, show_default=True, type=int,
              help="Worker processes (or threads with --threads).")  # fmt: skip
@click.option("--threads", is_flag=True, help="Thread workers instead of processes.")
def worker(workers, threads):
    """Work off queued bill runs, invoice rendering and e-mail (a huey consumer); queue a
    dunning run for today every BILLHIVE_DUNNING_SECONDS (default 3600; 0: never).

    The queue is BILLHIVE_QUEUE: sqlite (a file in the data dir, this machine) or redis
    (BILLHIVE_REDIS_URL, any number of machines sharing the database). Start as many workers
    as you like; a killed one loses nothing (see `billhive bill-run sweep`).
    """
    import logging

    from core import tasks
    from core.billing.runs import queue

    if workers < 1:
        raise click.BadParameter("at least 1", param_hint="--workers")
    app = get_app()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(name)s "
                        "%(levelname)s %(message)s")  # fmt: skip
    logging.getLogger("huey").setLevel(logging.WARNING)  # one line per task is too much
    try:
        queue.run_worker(app, workers=workers, worker_type="thread" if threads else "process",
                         echo=click.echo)  # fmt: skip
    except tasks.QueueError as exc:
        raise click.ClickException(str(exc)) from None


# -- plugins ---------------------------------------------------------------------------------


@main.group()
def plugins():
    """List, enable and disable add-ons."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_app
def plugins_list(as_json):
    """Installed plugins: enabled, the licence feature they need, whether it is covered."""
    from core.api.resources import plugin_rows

    rows = [r for r in plugin_rows() if r["name"] != "core"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<20} {'TITLE':<34} {'VERSION':<8} {'ENABLED':<8} {'FEATURE':<12} LICENSED")
    for r in rows:
        click.echo(
            f"{r['name']:<20} {r['title'][:34]:<34} {r['version']:<8} "
            f"{'yes' if r['enabled'] else 'no':<8} {r['license_feature'] or '-':<12} "
            f"{'yes' if r['licensed'] else 'no'}"
        )


@plugins.command("enable")
@click.argument("name")
@with_app
def plugins_enable(name):
    """Enable a plugin (refused when its licence feature is not covered)."""
    changed = host().set_enabled(name, True)
    click.echo(f"Plugin '{name}' enabled." if changed else f"Plugin '{name}' was already enabled.")


@plugins.command("disable")
@click.argument("name")
@with_app
def plugins_disable(name):
    """Disable a plugin; its data stays and comes back when it is enabled again."""
    changed = host().set_enabled(name, False)
    click.echo(
        f"Plugin '{name}' disabled." if changed else f"Plugin '{name}' was already disabled."
    )


# -- plugin migrations (core.migrations) -----------------------------------------------------


@main.command()
@click.option(
    "--plan", "plan_only", is_flag=True, help="Show what would be applied; change nothing."
)
@click.option(
    "--draft",
    metavar="PLUGIN",
    help="Print a migration step turning PLUGIN's tables into its current models.",
)
@with_app
def migrate(plan_only, draft):
    """Apply the pending migrations of enabled plugins (after upgrading one)."""
    from core import migrations

    if draft:
        text = migrations.draft(host(), draft)
        click.echo(text or f"The tables of '{draft}' match its models: nothing to draft.")
        return
    rows = migrations.plan(host())
    if not rows:
        click.echo("No installed plugin declares migrations.")
        return
    waiting = 0
    for row in rows:
        state = "enabled" if row.enabled else "disabled"
        current = row.applied[-1].version if row.applied else "none"
        click.echo(f"{row.plugin} ({state}): at {current}")
        for step in row.pending:
            when = "" if row.enabled else " (applied when the plugin is enabled)"
            click.echo(f"  pending {step}{when}")
            waiting += row.enabled
        if row.unknown:
            click.echo(f"  applied but not declared by the installed plugin: {row.unknown}")
        if row.drift:
            click.echo("  models differ from the tables; draft a migration with "
                       f"`billhive migrate --draft {row.plugin}`:")  # fmt: skip
            click.echo("    " + row.drift.replace("\n", "\n    "))
    if plan_only or not waiting:
        click.echo(f"{waiting} migration(s) to apply." if waiting else "Nothing to apply.")
        return
    for plugin, steps in migrations.migrate_enabled(host()).items():
        for step in steps:
            click.echo(f"{plugin}: applied {step}")


# -- licences --------------------------------------------------------------------------------


@main.group()
def license():  # noqa: A001 - the command's name
    """Make, install and show licences."""


@license.command("keygen")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False))
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False))
def license_keygen(private_path, public_path):
    """Make an Ed25519 key pair for issuing licences."""
    from core.licenses import generate_keypair, key_id

    private_pem, public_pem = generate_keypair()
    Path(private_path).write_bytes(private_pem)
    Path(private_path).chmod(0o600)
    Path(public_path).write_bytes(public_pem)
    click.echo(f"Key {key_id(public_pem)}: private key {private_path}, public key {public_path}")


@license.command("issue")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--licensee", required=True)
@click.option("--features", required=True, help="Comma-separated, e.g. FT-3001.007,BH-UNITS")
@click.option("--expires", required=True, help="YYYY-MM-DD")
def license_issue(key_path, licensee, features, expires):
    """Write a signed licence to stdout."""
    from core.licenses import issue_license

    codes = [f.strip() for f in features.split(",") if f.strip()]
    try:
        text = issue_license(
            Path(key_path).read_bytes(), licensee, codes, parse_day(expires, "--expires")
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(text)


@license.command("install")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_app
def license_install(path):
    """Verify and install a licence file."""
    from core import license_store
    from core.licenses import LicenseError

    try:
        lic = license_store.install(Path(path).read_text("utf-8"), host().license_key_paths)
    except LicenseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Licence for {lic.licensee} installed: {', '.join(lic.features)}; "
        f"valid until {lic.expires}."
    )


@license.command("show")
@click.option("--json", "as_json", is_flag=True)
@with_app
def license_show(as_json):
    """Show the installed licence and whether it is valid today."""
    from core.api.resources import license_status

    status = license_status()
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    if not status["installed"]:
        click.echo("No licence installed.")
        return
    click.echo(
        f"Licensee: {status['licensee']}\nExpires:  {status['expires']}\n"
        f"Features: {', '.join(status['features'])}\n"
        f"Valid:    {'yes' if status['valid'] else 'no — ' + (status['problem'] or '')}"
    )


# -- users -----------------------------------------------------------------------------------


@main.group("users")
def users_group():
    """List and create users."""


@users_group.command("list")
@click.option("--account", "account_id", type=int, help="Only this account's users.")
@with_app
def users_list(account_id):
    """List users with their account and roles."""
    from core.models import User

    query = User.select().order_by(User.account, User.email)
    if account_id:
        query = query.where(User.account == account_id)
    for u in query:
        roles = ", ".join(link.role.name for link in u.role_links)
        click.echo(f"{u.id:>5}  {u.email:<36} account {u.account_id:<5} {roles}")


@users_group.command("create")
@click.option("--account", "account_id", type=int, required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default="")
@click.option("--role", "role_names", multiple=True, help="Role name of that account.")
@with_app
def users_create(account_id, email, password, name, role_names):
    """Create a user in an account, optionally with roles of that account."""
    from core import users
    from core.models import Role

    role_ids = []
    for rn in role_names:
        role = Role.get_or_none(Role.account == account_id, Role.name == rn)
        if role is None:
            raise click.ClickException(f"--role: account {account_id} has no role '{rn}'")
        role_ids.append(role.id)
    user = users.create_user(
        None,
        {
            "email": email,
            "password": password,
            "name": name,
            "account_id": account_id,
            "role_ids": role_ids,
        },
    )
    click.echo(f"User {user.email} created (id {user.id}).")


# -- accounts --------------------------------------------------------------------------------


@main.group("accounts")
def accounts_group():
    """List accounts and edit them (billing terms included: the shell is the operator)."""


@accounts_group.command("list")
@with_app
def accounts_list():
    """Every account in tree order, with its billing terms."""
    from core.models import Account

    for a in Account.select().order_by(Account.path):
        indent = "  " * a.depth
        click.echo(
            f"{a.id:>5}  {indent}{a.name} ({a.type})  {a.currency}  day {a.bill_cycle_day}  "
            f"tax {a.tax_rate}%" + ("" if a.status == "active" else f"  [{a.status}]")
        )


@accounts_group.command("edit")
@click.argument("account_id", type=int)
@click.option("--name")
@click.option("--email")
@click.option("--address")
@click.option("--currency", help="ISO 4217; refused once the account has billing in its own.")
@click.option("--bill-cycle-day", help="1-28.")
@click.option("--tax-rate", help="Percent, e.g. 19 or 7.5.")
@click.option("--invoice-prefix")
@click.option(
    "--payment-terms-days",
    type=click.IntRange(0, 365),
    help="Net days of the account's invoices (0-365).",
)
@with_app
def accounts_edit(account_id, payment_terms_days, **fields):
    """Edit an account. The operator's shell sets billing terms (currency, bill cycle day, tax
    rate, payment terms) of any account, the provider's too; the same checks as the API and
    the panel apply (a used currency stays; nothing is written when one fails)."""
    from core import accounts
    from core.billing.ledger import payments
    from core.models import Account

    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise click.ClickException(f"account {account_id} not found")
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes and payment_terms_days is None:
        raise click.UsageError("nothing to change: give at least one option")
    if changes:
        account = accounts.update_account(None, account, changes)
    if payment_terms_days is not None:
        current = payments.settings_of(account)
        payments.update_settings(
            None,
            account,
            {
                "contact_name": current.contact_name,
                "contact_email": current.contact_email,
                "contact_phone": current.contact_phone,
                "invoice_email": current.invoice_email,
                "payment_terms_days": payment_terms_days,
            },
        )
    terms = payments.settings_of(account).payment_terms_days
    click.echo(
        f"Account {account.id} {account.name}: {account.currency}, bill cycle day "
        f"{account.bill_cycle_day}, tax {account.tax_rate}%, payment terms "
        f"{'default' if terms is None else f'{terms} days'}."
    )


@accounts_group.command("billing-details")
@click.argument("account_id", type=int)
@click.option("--legal-name")
@click.option("--street", help="Street lines, separated by '\\n' (at most 3).")
@click.option("--postcode")
@click.option("--city")
@click.option("--region")
@click.option("--country", help="ISO 3166 alpha-2, e.g. DE.")
@click.option("--vat-id", help="With or without its country prefix; stored compact.")
@click.option("--registration-number")
@click.option("--billing-emails", help="One or more addresses, separated by commas.")
@click.option("--invoice-language", help="en or de.")
@click.option("--iban", help="Issuers (provider, resellers) only.")
@click.option("--bic")
@click.option("--payment-text", help="Free-text payment instructions.")
@click.option("--payment-terms-days", help="The issuer's default net days (0-365; '' = 14).")
@click.option("--payment-reference", help="e.g. '{number}/{account_ref}'.")
@with_app
def accounts_billing_details(account_id, **fields):
    """Show or change an account's billing details and (issuers) payment instructions
    (core/billing/invoicing/parties.py): the same checks as the API and the panel, every bad field named
    at once, nothing written when one fails. Without options: show them."""
    from core.billing.invoicing import parties
    from core.models import Account

    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise click.ClickException(f"account {account_id} not found")
    changes = {k: v for k, v in fields.items() if v is not None}
    if "street" in changes:
        changes["street"] = changes["street"].replace("\\n", "\n")
    details = parties.update(None, account, changes) if changes else parties.details_of(account)
    party = parties.party(account, details)
    click.echo(f"Account {account.id} {account.name}")
    click.echo(f"  Legal name: {party['name']}")
    click.echo(f"  Address: {' / '.join(party['address']) or '-'}")
    click.echo(f"  VAT ID: {party['vat_id'] or '-'}   Registration: "
               f"{party['registration_number'] or '-'}")  # fmt: skip
    click.echo(f"  Billing e-mails: {', '.join(party['emails']) or '-'}   "
               f"Language: {party['language']}")  # fmt: skip
    if parties.is_issuer(account):
        pay = parties.payment_instructions(account, details)
        click.echo(f"  Payment: IBAN {pay['iban'] or '-'}  BIC {pay['bic'] or '-'}  "
                   f"terms {pay['terms_days']} days  reference {pay['reference_rule']}"
                   + (f"  text: {pay['text']}" if pay["text"] else ""))  # fmt: skip


@accounts_group.command("status")
@click.argument("account_id", type=int)
@click.argument("status", type=click.Choice(["active", "suspended", "closed"]))
@click.option("--reason", default="", help="Why (kept with the change and in the audit log).")
@with_app
def accounts_status(account_id, status, reason):
    """Suspend (suspended), reactivate (active) or close (closed, final) an account. A
    suspended account and everything below it get no bill runs and no logins; see
    core/lifecycle.py for what each status means."""
    from core import lifecycle
    from core.models import Account

    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise click.ClickException(f"account {account_id} not found")
    account = lifecycle.set_account_status(account, status, None, reason)
    click.echo(f"Account {account.id} {account.name}: {account.status}.")


# -- billing (core.billing.cli) --------------------------------------------------------------

main.add_command(bill_run)
main.add_command(dunning)
main.add_command(usage)
main.add_command(invoices)

main.add_command(mail)

# -- plugin developer kit (hostapp.scaffold) -------------------------------------------------

main.add_command(new_plugin)


if __name__ == "__main__":
    main()
