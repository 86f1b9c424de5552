"""Throwaway plugin for the RBAC property test: a reseller-level account type that nests
(so generated trees have depth) and may own Standard customers."""

from core import hookimpl
from core.registry import AccountType, PluginMeta

PLUGIN = PluginMeta(name="rw_branch", title="Nested test branches", version="0.0.1")


@hookimpl
def register_account_types():
    return [
        AccountType(
            "rwbranch",
            "Branch",
            "reseller",
            None,
            child_types=("rwbranch", "customer"),
            parent_types=("provider", "rwbranch"),
        )
    ]
