"""Role wizard: Custom billing roles per provider, reseller and customer, with the Add New Role wizard."""

from core.kit import MenuItem, PluginMeta, hookimpl
from plugins.role_wizard import views

PLUGIN = PluginMeta(
    name="role_wizard",
    title="Role wizard",
    version="0.1.0",
    license_feature=None,
    description="Custom billing roles per provider, reseller and customer, with the Add New Role wizard.",
)


@hookimpl
def register_blueprints():
    return [views.blueprint]


@hookimpl
def register_menu_items():
    # A tab on every account page (provider: the security settings; resellers and customers
    # on their own account pages). Listing needs users.view or roles.manage (either one: a
    # role manager without users.view still finds the tab); changes need roles.manage.
    return [
        MenuItem(
            "Roles", "role_wizard.roles", ("users.view", "roles.manage"), where="account", order=20
        )
    ]
