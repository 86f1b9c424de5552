"""Deployment security of every response, in one place (called by ``create_app``).

* ``BILLHIVE_BEHIND_PROXY=N``: the app runs behind N trusted reverse proxies (a TLS
  terminator, a load balancer). werkzeug's ``ProxyFix`` then takes the client address,
  scheme, host, port and prefix from the last N ``X-Forwarded-*`` values; without it (0, the
  default) those headers are ignored, so a client cannot claim another address or https.
* Cookies: under https (directly or as the trusted proxy says) every cookie the app sets —
  the session (which also holds the CSRF token), flask-login's remember cookie, anything a
  plugin sets — is marked ``Secure``. They are ``HttpOnly`` and ``SameSite=Lax`` always.
* Headers on every response, panel, API and static files alike:
  ``Content-Security-Policy`` (scripts from this origin only: no inline script and no
  ``on...=`` attributes anywhere, the panel's behaviour is ``core/panel/static/panel.js``;
  styles from this origin plus inline ``style`` attributes, which run no code; no plugins,
  no framing, forms post to this origin only), ``X-Frame-Options: DENY`` for browsers that
  predate ``frame-ancestors``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
  same-origin`` (Flask-WTF compares the referrer on https posts, so it is kept for our own
  origin), ``Cache-Control: no-store`` on everything but static files (pages, API answers and
  invoice downloads hold tenant data) and, under https, ``Strict-Transport-Security``.
"""

from __future__ import annotations

from flask import Flask, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HSTS = "max-age=31536000; includeSubDomains"


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, ``Secure`` whenever the request came over https (the
    session cookie is written after the ``after_request`` functions, so it is marked here)."""

    def get_cookie_secure(self, app) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_app(app: Flask) -> None:
    hops = int(app.config.get("BEHIND_PROXY") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
    app.session_interface = _SessionInterface()
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers.setdefault(
            "Content-Security-Policy", app.config.get("CONTENT_SECURITY_POLICY", CSP)
        )
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if not (request.endpoint or "").endswith("static"):
            headers["Cache-Control"] = "no-store"  # tenant data stays out of shared caches
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", HSTS)
            cookies = headers.getlist("Set-Cookie")  # remember cookie, plugins' cookies
            if cookies:
                headers.remove("Set-Cookie")
                for cookie in cookies:
                    secure = any(p.strip().lower() == "secure" for p in cookie.split(";"))
                    headers.add("Set-Cookie", cookie if secure else f"{cookie}; Secure")
        return response
