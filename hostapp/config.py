"""Configuration from the environment (the names are a contract operators rely on)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def data_dir() -> Path:
    return Path(os.environ.get("BILLHIVE_DATA_DIR", "./instance")).resolve()


def database_url(folder: Path | None = None) -> str:
    return os.environ.get("BILLHIVE_DATABASE_URL") or (
        f"sqlite:///{(folder or data_dir()) / 'billhive.db'}"
    )


def instance_exists() -> bool:
    """Whether the configured instance was created (its data folder, and its SQLite file
    where it uses one), found without creating anything: ``billhive --help`` writes nothing."""
    folder = data_dir()
    if not folder.is_dir():
        return False
    url = database_url(folder)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return bool(path) and Path(path).is_file()
    return True


def _secret_key(folder: Path) -> str:
    if os.environ.get("BILLHIVE_SECRET_KEY"):
        return os.environ["BILLHIVE_SECRET_KEY"]
    path = folder / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _connector_key(folder: Path) -> str:
    """The Fernet key of connector secrets (core.connectors.secrets), kept like the secret key."""
    if os.environ.get("BILLHIVE_CONNECTOR_KEY"):
        return os.environ["BILLHIVE_CONNECTOR_KEY"]
    path = folder / "connector_key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


# logins, panel sessions and API tokens (core.users); the README's configuration table
LOGIN_SETTINGS = {
    "LOGIN_MAX_FAILURES": ("BILLHIVE_LOGIN_MAX_FAILURES", 5),
    "LOGIN_MAX_FAILURES_PER_ADDRESS": ("BILLHIVE_LOGIN_MAX_FAILURES_PER_ADDRESS", 30),
    "LOGIN_LOCKOUT_SECONDS": ("BILLHIVE_LOGIN_LOCKOUT_SECONDS", 900),
    "SESSION_IDLE_MINUTES": ("BILLHIVE_SESSION_IDLE_MINUTES", 60),
    "SESSION_MAX_HOURS": ("BILLHIVE_SESSION_MAX_HOURS", 12),
    "TOKEN_IDLE_DAYS": ("BILLHIVE_TOKEN_IDLE_DAYS", 30),
    "TOKEN_MAX_DAYS": ("BILLHIVE_TOKEN_MAX_DAYS", 90),
}


def _login_settings() -> dict:
    out = {}
    for key, (env, default) in LOGIN_SETTINGS.items():
        raw = os.environ.get(env, "").strip()
        if not raw:
            out[key] = default
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{env} must be a whole number of at least 1, got {raw!r}")
        out[key] = int(raw)
    return out


def _mail_settings(folder: Path) -> dict:
    """E-mail (core.mail): the outbox folder by default, or an SMTP server; the names are in
    docs/operations.md."""
    env = os.environ.get
    security = (env("BILLHIVE_MAIL_SECURITY") or "none").strip().lower()
    if security not in ("none", "starttls", "ssl"):
        raise ValueError(f"BILLHIVE_MAIL_SECURITY must be none, starttls or ssl, not {security!r}")
    transport = (env("BILLHIVE_MAIL_TRANSPORT") or "outbox").strip().lower()
    if transport not in ("outbox", "smtp"):
        raise ValueError(f"BILLHIVE_MAIL_TRANSPORT must be outbox or smtp, not {transport!r}")
    numbers = {}
    for key, name, default in (
        ("MAIL_PORT", "BILLHIVE_MAIL_PORT", 465 if security == "ssl" else 25),
        ("MAIL_TIMEOUT", "BILLHIVE_MAIL_TIMEOUT", 10),
        ("MAIL_MAX_ATTEMPTS", "BILLHIVE_MAIL_MAX_ATTEMPTS", 5),
        ("MAIL_RETRY_SECONDS", "BILLHIVE_MAIL_RETRY_SECONDS", 60),
        ("MAIL_STALE_SECONDS", "BILLHIVE_MAIL_STALE_SECONDS", 300),
    ):
        raw = (env(name) or "").strip()
        if raw and not raw.isdigit():
            raise ValueError(f"{name} must be a whole number, got {raw!r}")
        numbers[key] = int(raw) if raw else default
    return {
        "MAIL_TRANSPORT": transport,
        "MAIL_OUTBOX_DIR": env("BILLHIVE_MAIL_OUTBOX_DIR") or str(folder / "outbox"),
        "MAIL_SERVER": env("BILLHIVE_MAIL_SERVER") or "localhost",
        "MAIL_USE_TLS": security == "starttls",
        "MAIL_USE_SSL": security == "ssl",
        "MAIL_USERNAME": env("BILLHIVE_MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env("BILLHIVE_MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": env("BILLHIVE_MAIL_SENDER") or "billhive@localhost",
        "MAIL_CA_FILE": env("BILLHIVE_MAIL_CA_FILE") or None,
        **numbers,
    }


def load(overrides: dict | None = None) -> dict:
    overrides = overrides or {}
    folder = Path(overrides.get("DATA_DIR") or data_dir())
    folder.mkdir(parents=True, exist_ok=True)
    keys = [p for p in os.environ.get("BILLHIVE_LICENSE_KEYS", "").split(os.pathsep) if p]
    plugins_env = os.environ.get("BILLHIVE_PLUGINS")
    config = {
        "DATA_DIR": str(folder),
        "DATABASE_URL": database_url(folder),
        "SECRET_KEY": _secret_key(folder),
        "CONNECTOR_KEY": overrides.get("CONNECTOR_KEY") or _connector_key(folder),
        # trusted licence keys: the configured files plus the instance's own key folder
        "LICENSE_KEY_PATHS": keys + [str(folder / "license-keys" / "*.pem")],
        # None = every installed plugin; a list = only those (tests name theirs)
        "PLUGINS": [p for p in plugins_env.split(",") if p] if plugins_env else None,
        "PLUGIN_MODULES": {},
        "STORAGE_DIR": os.environ.get("BILLHIVE_STORAGE_DIR") or str(folder / "storage"),
        # bill runs: inline (in the process that starts them), sqlite or redis (huey queues
        # consumed by `billhive worker`); redis is the default when BILLHIVE_REDIS_URL is set
        "REDIS_URL": os.environ.get("BILLHIVE_REDIS_URL") or None,
        "QUEUE": os.environ.get("BILLHIVE_QUEUE")
        or ("redis" if os.environ.get("BILLHIVE_REDIS_URL") else "inline"),
        "QUEUE_NAME": os.environ.get("BILLHIVE_QUEUE_NAME") or "billhive",
        "QUEUE_PATH": os.environ.get("BILLHIVE_QUEUE_PATH") or str(folder / "queue.db"),
        "QUEUE_STALE_SECONDS": float(os.environ.get("BILLHIVE_QUEUE_STALE_SECONDS") or 120),
        "QUEUE_SWEEP_SECONDS": float(os.environ.get("BILLHIVE_QUEUE_SWEEP_SECONDS") or 30),
        # each `billhive worker` queues a dunning run this often (core.billing.ledger.dunning); 0: never
        "DUNNING_SECONDS": float(os.environ.get("BILLHIVE_DUNNING_SECONDS") or 3600),
        # the instance's calendar (core.clock.today): a bill run may not be for a later date
        "TIMEZONE": os.environ.get("BILLHIVE_TIMEZONE") or "UTC",
        **_login_settings(),
        **_mail_settings(folder),
        # trusted reverse proxies in front of the app (X-Forwarded-* honoured from that many)
        "BEHIND_PROXY": int(os.environ.get("BILLHIVE_BEHIND_PROXY") or 0),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        "API_TITLE": "Billhive API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
    }
    config.update(overrides)
    return config
