"""What the API sends back. Input schemas live beside the services that validate them."""

from datetime import UTC

from marshmallow import Schema, fields, validate

from core.fields import Id, Secret, Text


class UtcDateTime(fields.DateTime):
    """A stored timestamp (naive UTC, ``core.db.utcnow``) answered as RFC 3339 with its offset,
    as the document's ``date-time`` format requires: ``2026-02-01T09:30:00+00:00``."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class ErrorOut(Schema):
    """Every API error: ``code`` names the kind (``not_found``, ``validation_error``, ...),
    ``message`` says what is wrong, ``errors`` maps each field to its messages."""

    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    errors = fields.Dict(required=True, metadata={"description": "field -> messages"})


class TokenRequest(Schema):
    email = Text(254, required=True, card_numbers=False)
    password = Secret(required=True)


class TokenOut(Schema):
    token = fields.String()


class AccountOut(Schema):
    id = fields.Integer()
    parent_id = fields.Integer(allow_none=True)
    type = fields.String()
    name = fields.String()
    status = fields.String()
    email = fields.String()
    address = fields.String()
    currency = fields.String()
    bill_cycle_day = fields.Integer()
    tax_rate = fields.String()
    invoice_prefix = fields.String()
    profile = fields.Dict()
    depth = fields.Integer()
    created_at = UtcDateTime()


class AccountStatusIn(Schema):
    """Suspend, reactivate or close an account (``core.lifecycle``)."""

    status = fields.String(
        required=True,
        validate=validate.OneOf(("active", "suspended", "closed")),
        metadata={"description": "active (reactivate), suspended or closed (final)"},
    )
    reason = Text(500, multiline=True, load_default="")


class AccountStatusChangeOut(Schema):
    status = fields.String()
    previous = fields.String()
    effective_on = fields.Date()
    actor = fields.String(attribute="actor_label")
    reason = fields.String()
    at = UtcDateTime()


class UserOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    email = fields.String()
    name = fields.String()
    is_active = fields.Boolean()
    roles = fields.Method("_roles")

    def _roles(self, user):
        from core.models import Role, UserRole

        q = Role.select().join(UserRole).where(UserRole.user == user.id).order_by(Role.name)
        return [{"id": r.id, "name": r.name} for r in q]


class RoleOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    name = fields.String()
    description = fields.String()
    default = fields.Boolean(attribute="is_default")
    privileges = fields.Method("_privileges")
    inactive_privileges = fields.Method("_inactive")
    users = fields.Method("_users")

    def _privileges(self, role):
        from core import rbac

        return sorted(rbac.stored_privileges(role))

    def _inactive(self, role):
        from core import rbac

        return sorted(rbac.stored_privileges(role) - rbac.role_privileges(role))

    def _users(self, role):
        from core import rbac

        return [u.email for u in rbac.users_holding(role)]


class RoleAssignment(Schema):
    user_id = Id(required=True)


class PrivilegeOut(Schema):
    code = fields.String()
    title = fields.String()
    group = fields.String()
    description = fields.String()
    levels = fields.List(fields.String())
    plugin = fields.String()


class PluginOut(Schema):
    name = fields.String()
    title = fields.String()
    version = fields.String()
    enabled = fields.Boolean()
    license_feature = fields.String(allow_none=True)
    licensed = fields.Boolean()
    license_problem = fields.String(allow_none=True)
    essential = fields.Boolean()


class LicenseIn(Schema):
    text = Text(20_000, required=True, multiline=True, card_numbers=False)


class LicenseOut(Schema):
    installed = fields.Boolean()
    valid = fields.Boolean()
    problem = fields.String(allow_none=True)
    licensee = fields.String(allow_none=True)
    issued = fields.String(allow_none=True)
    expires = fields.String(allow_none=True)
    features = fields.List(fields.String())


class AuditOut(Schema):
    id = fields.Integer()
    at = UtcDateTime()
    actor = fields.String(attribute="actor_label")
    account_id = fields.Integer(allow_none=True)
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
