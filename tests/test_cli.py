"""The ``billhive`` command line as an operator uses it: init, licences, plugins, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import hostapp.cli
from core.licenses import generate_keypair, issue_license

ROOT = Path(__file__).resolve().parent.parent


class Cli:
    def __init__(self, env: dict, tmp: Path):
        self.env = env
        self.tmp = tmp
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        return self.runner.invoke(hostapp.cli.main, list(args), input=input, env=self.env)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def keys(self) -> tuple[Path, Path]:
        private, public = self.tmp / "signing.pem", self.tmp / "trusted.pem"
        if not private.exists():
            self.ok("license", "keygen", "--private", str(private), "--public", str(public))
        return private, public

    def licence_file(self, features="FT-3001.007", expires=None) -> Path:
        private, _ = self.keys()
        expires = expires or (date.today() + timedelta(days=90)).isoformat()
        text = self.ok(
            "license", "issue", "--key", str(private), "--licensee", "Acme Telecom",
            "--features", features, "--expires", expires,
        )  # fmt: skip
        path = self.tmp / "licence.json"
        path.write_text(text)
        return path

    def plugins(self) -> dict:
        return {p["name"]: p for p in json.loads(self.ok("plugins", "list", "--json"))}


@pytest.fixture
def cli(database_url, tmp_path, monkeypatch):
    """The CLI over a fresh instance with only ``reseller_accounts`` installed."""
    env = {
        "BILLHIVE_DATA_DIR": str(tmp_path / "instance"),
        "BILLHIVE_DATABASE_URL": database_url,
        "BILLHIVE_PLUGINS": "reseller_accounts",
        "BILLHIVE_SECRET_KEY": "cli-test",
        "BILLHIVE_LICENSE_KEYS": str(tmp_path / "trusted.pem"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hostapp.cli, "_app", None)
    yield Cli(env, tmp_path)
    if hostapp.cli._app is not None:
        database = hostapp.cli._app.extensions["billhive"].database
        if not database.is_closed():
            database.close()
    hostapp.cli._app = None


def test_init_creates_the_provider_and_operator_without_prompts(cli):
    out = cli.ok(
        "init", "--operator-email", "Boss@Example.com", "--operator-password", "s3cret-pass-12"
    )
    assert "operator boss@example.com" in out
    again = cli.ok("init", "--operator-email", "boss@example.com", "--operator-password", "x" * 8)
    assert "Already initialised" in again
    from core.models import Account, User

    app = hostapp.cli.get_app()
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        assert [a.type for a in Account.select()] == ["provider"]
        assert User.get(User.email == "boss@example.com").account.type == "provider"


def test_init_with_a_too_short_password_fails_naming_the_field(cli):
    result = cli("init", "--operator-email", "boss@example.com", "--operator-password", "short")
    assert result.exit_code != 0
    assert "password" in result.output


def test_init_and_users_create_refuse_a_common_password(cli):
    """The password policy (core.passwords) holds in the CLI too: 12 characters at least and
    not one of the most common passwords."""
    bad = ("init", "--operator-email", "boss@example.com", "--operator-password")
    result = cli(*bad, "password1234")
    assert result.exit_code != 0
    assert "password: is one of the most common passwords" in result.output
    cli.ok(*bad, "boss-password-2026")
    result = cli("users", "create", "--account", "1", "--email", "x@example.com",
                 "--password", "qwerty123456")  # fmt: skip
    assert result.exit_code != 0
    assert "password: is one of the most common passwords" in result.output


def test_keygen_issue_install_and_show_a_licence(cli):
    private, public = cli.keys()
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    path = cli.licence_file("FT-3001.007,BH-UNITS", "2099-12-31")
    doc = json.loads(path.read_text())
    assert doc["licensee"] == "Acme Telecom"
    assert doc["features"] == ["FT-3001.007", "BH-UNITS"]
    assert doc["expires"] == "2099-12-31"

    assert json.loads(cli.ok("license", "show", "--json"))["installed"] is False
    out = cli.ok("license", "install", str(path))
    assert "Acme Telecom" in out and "2099-12-31" in out
    shown = json.loads(cli.ok("license", "show", "--json"))
    assert shown["installed"] and shown["valid"]
    assert shown["licensee"] == "Acme Telecom"
    assert shown["features"] == ["FT-3001.007", "BH-UNITS"]
    assert "Valid:    yes" in cli.ok("license", "show")


def test_issue_refuses_a_bad_expiry_date(cli):
    private, _ = cli.keys()
    result = cli(
        "license", "issue", "--key", str(private), "--licensee", "A", "--features", "X-1",
        "--expires", "31/12/2030",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--expires" in result.output or "expires" in result.output


def test_plugins_list_json_has_the_contract_fields(cli):
    row = cli.plugins()["reseller_accounts"]
    assert set(row) >= {"name", "title", "version", "enabled", "license_feature", "licensed"}
    assert row["enabled"] is False
    assert row["license_feature"] == "FT-3001.007"
    assert row["licensed"] is False
    assert "reseller_accounts" in cli.ok("plugins", "list")


def test_enabling_a_licensed_add_on_is_refused_without_a_licence_and_works_with_one(cli):
    result = cli("plugins", "enable", "reseller_accounts")
    assert result.exit_code != 0
    assert "FT-3001.007" in result.output
    assert cli.plugins()["reseller_accounts"]["enabled"] is False

    cli.ok("license", "install", str(cli.licence_file("FT-3001.007")))
    assert cli.plugins()["reseller_accounts"]["licensed"] is True
    assert "enabled" in cli.ok("plugins", "enable", "reseller_accounts")
    assert cli.plugins()["reseller_accounts"]["enabled"] is True
    assert "already enabled" in cli.ok("plugins", "enable", "reseller_accounts")
    assert "disabled" in cli.ok("plugins", "disable", "reseller_accounts")
    assert cli.plugins()["reseller_accounts"]["enabled"] is False


def test_a_licence_without_the_feature_does_not_enable_the_add_on(cli):
    cli.ok("license", "install", str(cli.licence_file("BH-UNITS")))
    result = cli("plugins", "enable", "reseller_accounts")
    assert result.exit_code != 0
    assert "FT-3001.007" in result.output and "does not list it" in result.output


def _refused(cli, text: str, reason: str):
    path = cli.tmp / f"{reason}.json"
    path.write_text(text)
    result = cli("license", "install", str(path))
    assert result.exit_code != 0
    assert f"({reason})" in result.output, result.output
    assert json.loads(cli.ok("license", "show", "--json"))["installed"] is False


def test_a_tampered_licence_is_refused_and_says_so(cli):
    text = cli.licence_file("BH-UNITS").read_text()
    _refused(cli, text.replace("BH-UNITS", "FT-3001.007"), "tampered")


def test_an_expired_licence_is_refused_and_says_so(cli):
    private, _ = cli.keys()
    text = issue_license(
        private.read_bytes(),
        "Acme",
        ["FT-3001.007"],
        date.today() - timedelta(days=1),
        issued=date.today() - timedelta(days=30),
    )
    _refused(cli, text, "expired")


def test_a_licence_signed_by_an_untrusted_key_is_refused_and_says_so(cli):
    cli.keys()
    stranger, _ = generate_keypair()
    text = issue_license(stranger, "Acme", ["FT-3001.007"], date.today() + timedelta(days=9))
    _refused(cli, text, "untrusted")


def test_a_malformed_licence_is_refused_and_says_so(cli):
    _refused(cli, "this is not a licence", "malformed")


def test_an_unknown_plugin_name_is_a_clear_error(cli):
    for action in ("enable", "disable"):
        result = cli("plugins", action, "no_such_plugin")
        assert result.exit_code != 0
        assert "unknown plugin 'no_such_plugin'" in result.output
        assert "reseller_accounts" in result.output  # says what is installed


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))


def test_every_command_has_help(cli):
    paths = list(_all_commands(hostapp.cli.main))
    assert {("init",), ("demo",), ("run",), ("plugins", "enable"), ("license", "issue")} <= set(
        paths
    )
    assert "Usage:" in cli.ok("--help")
    for path in paths:
        out = cli.ok(*path, "--help")
        assert "Usage:" in out, path
        summary = out.split("\n\n")[1].strip()
        assert summary and not summary.startswith("Options:"), f"{' '.join(path)} has no help"


@pytest.mark.slow
def test_the_installed_billhive_command_changes_what_a_running_app_serves(cli, make_app):
    """A real second process (the console script) enables a plugin; the running app sees it on
    its next request without a restart."""
    cli.ok("init", "--operator-email", "op@example.com", "--operator-password", "s3cret-pass-12")
    cli.ok("license", "install", str(cli.licence_file("FT-3001.007")))
    app = make_app(
        plugins=["reseller_accounts"],
        DATA_DIR=cli.env["BILLHIVE_DATA_DIR"],
        LICENSE_KEY_PATHS=[cli.env["BILLHIVE_LICENSE_KEYS"]],
    )
    client = app.test_client()
    token = client.post(
        "/api/v1/tokens", json={"email": "op@example.com", "password": "s3cret-pass-12"}
    ).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    def enabled():
        rows = client.get("/api/v1/plugins", headers=headers).get_json()
        return {r["name"]: r["enabled"] for r in rows}["reseller_accounts"]

    assert enabled() is False
    billhive = Path(sys.executable).with_name("billhive")
    proc = subprocess.run(
        [str(billhive), "plugins", "enable", "reseller_accounts"],
        env={**os.environ, **cli.env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert enabled() is True


def test_a_plugin_command_group_nested_in_an_app_group_runs_its_commands_in_the_app(cli):
    """A plugin's group made with core.kit's AppGroup may have sub-groups: their commands
    run inside the instance's app like the group's own (the host, the database)."""
    from core.commands import AppGroup
    from core.current import host
    from core.models import Account

    widgets = AppGroup("widgets")

    @widgets.group("reports")
    def reports():
        pass

    @reports.command("accounts")
    def accounts():
        enabled = host().is_enabled("reseller_accounts")
        click.echo(f"accounts: {Account.select().count()}, resellers enabled: {enabled}")

    cli.ok("init", "--operator-email", "op@acme.test", "--operator-password", "s3cret-pass-12")
    result = CliRunner().invoke(widgets, ["reports", "accounts"], env=cli.env)
    assert result.exit_code == 0, result.output
    assert result.output == "accounts: 1, resellers enabled: False\n"
