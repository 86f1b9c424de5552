"""Errors a person can act on. Views turn them into JSON (API) or form messages (panel)."""

from __future__ import annotations


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


class LicenseRequired(BillhiveError):
    """New work of an add-on whose licence feature is not (or no longer) covered."""

    status = 403
    code = "license_required"


def marshmallow_errors(err) -> ValidationFailed:
    """A marshmallow ValidationError as ours, naming each field in the message."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    flat = []
    for name, msgs in messages.items():
        text = "; ".join(str(m) for m in msgs) if isinstance(msgs, list) else str(msgs)
        flat.append(f"{name}: {text}")
    return ValidationFailed("invalid input — " + ", ".join(flat), messages)
