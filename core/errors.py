"""Errors a person can act on, and how bad input becomes one (:func:`load`). Views turn them
into JSON (API) or form messages (panel)."""

from __future__ import annotations

from marshmallow import ValidationError


class BillhiveError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "errors": self.errors}


class ValidationFailed(BillhiveError):
    """Bad input; ``errors`` maps each field to its messages."""

    status = 422
    code = "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(f"{name}: {message}", {name: [message]})


class NotFound(BillhiveError):
    status = 404
    code = "not_found"

    def __init__(self, message: str = "not found", errors: dict | None = None):
        super().__init__(message, errors)


class Forbidden(BillhiveError):
    status = 403
    code = "forbidden"


class Conflict(BillhiveError):
    status = 409
    code = "conflict"


class UnsupportedMediaType(BillhiveError):
    """A write whose body is not JSON (``core.api.require_json_body``)."""

    status = 415
    code = "unsupported_media_type"


class LicenseRequired(BillhiveError):
    """New work of an add-on whose licence feature is not (or no longer) covered."""

    status = 403
    code = "license_required"


def field_messages(messages) -> dict[str, list[str]]:
    """marshmallow's (possibly nested) messages as ``{field: [message, ...]}``, a nested
    field named by its dotted path: ``{"lines": {0: {"unit_price": [...]}}}`` becomes
    ``{"lines.0.unit_price": [...]}``. Messages that name no field are under ``_schema``."""
    if not isinstance(messages, dict):
        return {
            "_schema": [str(m) for m in (messages if isinstance(messages, list) else [messages])]
        }
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                name = str(key)
                if name == "_schema" and prefix:
                    name = ""
                walk(f"{prefix}.{name}" if prefix and name else prefix or name, inner)
        else:
            items = value if isinstance(value, list) else [value]
            nested = [m for m in items if isinstance(m, dict)]
            out.setdefault(prefix or "_schema", []).extend(
                str(m) for m in items if not isinstance(m, dict)
            )
            for m in nested:
                walk(prefix, m)
            if not out[prefix or "_schema"]:
                del out[prefix or "_schema"]

    walk("", messages)
    return out


def describe(messages: dict[str, list[str]]) -> str:
    """``"invalid input — name: message; message, other: message"``."""
    return "invalid input — " + ", ".join(
        f"{name}: {'; '.join(map(str, msgs))}" for name, msgs in messages.items()
    )


def marshmallow_errors(err) -> ValidationFailed:
    """A marshmallow ValidationError as ours, naming each field in the message."""
    messages = field_messages(err.messages)
    return ValidationFailed(describe(messages), messages)


def load(schema, payload, *, partial: bool | tuple[str, ...] | None = None) -> dict:
    """``payload`` (None: empty) through the marshmallow ``schema``; bad input raises
    :class:`ValidationFailed` (422) naming each field. ``partial`` as marshmallow's (None:
    the schema's own; a tuple: the fields that may be missing)."""
    try:
        return schema.load(payload or {}, partial=partial)
    except ValidationError as err:
        raise marshmallow_errors(err) from None
