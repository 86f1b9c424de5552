"""The one check for redirect targets that come from a request (``?next=``, a form's
``next``): every view that redirects to a caller-chosen place goes through :func:`safe_next`.

A target is followed only when it is a same-origin relative path: it starts with one ``/``
and names no scheme or host, whatever a browser would make of it. Before the check the value
is normalised the ways browsers and proxies do: percent-encoding is decoded (repeatedly, so
``%252F`` counts as ``/``), backslashes count as slashes, and any control or whitespace
character (tab, CR, LF, NUL, U+3000, ...) makes the value unusable, because browsers drop
some of them (``/\\t/evil`` becomes ``//evil``) and a CR/LF would split the ``Location``
header. A refused value is ignored (the caller's fallback is used), never an error.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import redirect

MAX_LENGTH = 2048


def _unsafe_char(ch: str) -> bool:
    return ch.isspace() or not ch.isprintable() or ch == "\\"


def safe_next(value) -> str | None:
    """``value`` if it is a same-origin relative path, else None."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return None
    decoded, seen = value, set()
    while decoded not in seen:  # decode until stable: %252F -> %2F -> /
        seen.add(decoded)
        if any(_unsafe_char(ch) for ch in decoded):
            return None
        try:
            decoded = unquote(decoded, errors="strict") if "%" in decoded else decoded
        except UnicodeDecodeError:  # %FF: not UTF-8, names no page of ours
            return None
        if len(seen) > 5:
            return None
    if not decoded.startswith("/") or decoded.startswith("//"):
        return None
    parts = urlsplit(decoded)
    if parts.scheme or parts.netloc:
        return None
    return value


def redirect_next(value, fallback: str):
    """A redirect to ``value`` when :func:`safe_next` accepts it, else to ``fallback``."""
    return redirect(safe_next(value) or fallback)
