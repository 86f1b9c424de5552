"""A plugin whose ``account_created`` event fails: the account must not be created at all."""

from core import hookimpl
from core.registry import PluginMeta

PLUGIN = PluginMeta(name="raising", title="Raising", version="0.1")


@hookimpl
def account_created(account, actor):
    raise RuntimeError(f"refusing account {account.name}")
