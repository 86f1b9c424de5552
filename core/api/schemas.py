"""What the API sends back. Input schemas live beside the services that validate them."""

from marshmallow import Schema, fields


class TokenRequest(Schema):
    email = fields.String(required=True)
    password = fields.String(required=True)


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
    created_at = fields.DateTime()


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
    user_id = fields.Integer(required=True)


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
    text = fields.String(required=True)


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
    at = fields.DateTime()
    actor = fields.String(attribute="actor_label")
    account_id = fields.Integer(allow_none=True)
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)


class ListArgs(Schema):
    page = fields.Integer(load_default=1, validate=lambda n: n >= 1)
    per_page = fields.Integer(load_default=50, validate=lambda n: 1 <= n <= 500)
