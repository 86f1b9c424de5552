"""The plugin host: one pluggy manager per application, discovery, enabled state.

Every installed plugin is registered with pluggy at start-up, and its declarations
(``register_*``) are collected once so conflicts surface before anyone enables it. Behaviour
hooks are called through a subset caller that leaves out disabled plugins. The enabled set
lives in the database; each process compares a version number on every request (and in every
CLI command) and reloads when another process changed it, so no restart is needed.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from core import HOOK_API_VERSION, PROJECT, hookspecs, migrations
from core._fastpath import Prepared
from core.db import database
from core.errors import LicenseRequired, NotFound
from core.registry import Catalog, Declared, PluginMeta, merge

log = logging.getLogger("billhive.plugins")
ENTRY_POINT_GROUP = "billhive.plugins"
CORE_PLUGIN = "core"


class PluginLoadError(RuntimeError):
    """Start-up refused: lists every plugin that could not be loaded, by name."""


@dataclass
class LoadedPlugin:
    meta: PluginMeta
    module: ModuleType
    source: str  # "core", "entry point", "configured"


def _meta_of(name: str, module: ModuleType) -> PluginMeta:
    meta = getattr(module, "PLUGIN", None)
    if not isinstance(meta, PluginMeta):
        raise PluginLoadError(f"plugin '{name}': module {module.__name__} has no PLUGIN metadata")
    if meta.api_version > HOOK_API_VERSION:
        raise PluginLoadError(
            f"plugin '{name}' needs hook API version {meta.api_version}, "
            f"but this Billhive provides version {HOOK_API_VERSION}; upgrade Billhive"
        )
    return meta


def hook_since(hook: str) -> int:
    """The hook API version that introduced ``hook``: its docstring's "Since API N."."""
    spec = getattr(hookspecs, hook)
    found = re.findall(r"Since API (\d+)\.", spec.__doc__ or "")
    if len(found) != 1:
        raise RuntimeError(f"hook spec {hook} must say 'Since API N.' exactly once")
    return int(found[0])


def _check_hooks(name: str, meta: PluginMeta, impls: list) -> None:
    """Warn about deprecated hooks and arguments (``hookspecs.DEPRECATED``) and about hooks
    newer than the API version the plugin declares, naming the plugin and the hook.

    ``impls`` are ``(hook name, pluggy HookImpl)`` pairs of one plugin."""
    for hook, impl in impls:
        problems = []
        if hook in hookspecs.DEPRECATED:
            problems.append(f"hook '{hook}' is deprecated ({hookspecs.DEPRECATED[hook]})")
        for arg in impl.argnames:
            key = f"{hook}({arg})"
            if key in hookspecs.DEPRECATED:
                problems.append(
                    f"argument '{arg}' of hook '{hook}' is deprecated ({hookspecs.DEPRECATED[key]})"
                )
        for problem in problems:
            message = f"plugin '{name}': {problem}"
            log.warning(message)
            warnings.warn(message, hookspecs.HookDeprecationWarning, stacklevel=2)
        since = hook_since(hook)
        if since > meta.api_version:
            log.warning(
                "plugin '%s' implements hook '%s' (since API %d) but declares api_version=%d; "
                "declare %d so that an older Billhive refuses it with a clear message",
                name,
                hook,
                since,
                meta.api_version,
                since,
            )


def discover(allow: list[str] | None, modules: dict[str, str] | None = None) -> list:
    """Find plugins: entry points of ``billhive.plugins`` (only the ``allow``-ed names when a
    list is given, so tests never pick up whatever happens to be installed) plus explicitly
    configured ``name -> module path`` pairs. Raises naming every plugin that failed."""
    found: list[tuple[str, ModuleType, str]] = []
    failures: list[str] = []
    wanted = set(allow) if allow is not None else None
    seen: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if (wanted is not None and ep.name not in wanted) or ep.name in seen:
            continue
        seen.add(ep.name)
        try:
            found.append((ep.name, ep.load(), "entry point"))
        except Exception as exc:  # noqa: BLE001 - reported by name below
            failures.append(f"plugin '{ep.name}' ({ep.value}) failed to import: {exc!r}")
    for name, path in (modules or {}).items():
        if name in seen:
            continue
        seen.add(name)
        try:
            found.append((name, importlib.import_module(path), "configured"))
        except Exception as exc:  # noqa: BLE001
            failures.append(f"plugin '{name}' ({path}) failed to import: {exc!r}")
    if wanted is not None:
        for name in sorted(wanted - seen):
            failures.append(f"plugin '{name}' is not installed (no '{ENTRY_POINT_GROUP}' entry)")
    if failures:
        raise PluginLoadError("cannot start: " + "; ".join(failures))
    return found


def _plugins_version_query():
    from core.models import StateVersion

    return StateVersion.select(StateVersion.value).where(StateVersion.key == "plugins")


_plugins_version = Prepared(_plugins_version_query)  # every request and task: SQL built once


class PluginHost:
    def __init__(self, found: list, license_key_paths: list[str] | None = None, *, core):
        """``core``: the core's own hook implementations (:mod:`core.builtin`), registered
        first as plugin ``core``; passed in by whoever builds the app, so the host (which
        every layer asks for the enabled plugins) depends on none of the domains they use."""
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, LoadedPlugin] = {}
        self.license_key_paths = license_key_paths or []
        self._tables: dict[str, tuple[str, type]] = {}  # table -> (plugin, model) declaring it
        self._add(CORE_PLUGIN, core, "core")
        errors = []
        for name, module, source in found:
            try:
                self._add(name, module, source)
            except PluginLoadError as exc:
                errors.append(str(exc))
        if errors:
            raise PluginLoadError("cannot start: " + "; ".join(errors))
        if os.environ.get("BILLHIVE_TRACE_HOOKS"):
            self._trace()
        self.catalog = self._collect()
        self.enabled: frozenset[str] = frozenset(
            n for n, p in self.plugins.items() if p.meta.essential
        )
        self.version: int | None = None
        self._callers: dict[tuple, pluggy.HookCaller] = {}

    # -- loading ---------------------------------------------------------------------------

    def _add(self, name: str, module: ModuleType, source: str) -> None:
        meta = _meta_of(name, module)
        if meta.name != name:
            raise PluginLoadError(
                f"plugin '{name}': its PLUGIN metadata is named '{meta.name}'; they must match"
            )
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin '{name}': {exc}") from None
        callers = self.pm.get_hookcallers(module) or []
        unknown = sorted(c.name for c in callers if c.spec is None)
        if unknown:
            self.pm.unregister(module)
            raise PluginLoadError(
                f"plugin '{name}' implements {', '.join(repr(u) for u in unknown)}, which this "
                f"Billhive (hook API {HOOK_API_VERSION}) does not define; see docs/hooks.md"
            )
        _check_hooks(
            name,
            meta,
            [(c.name, i) for c in callers for i in c.get_hookimpls() if i.plugin is module],
        )
        try:
            migrations.declared(name, module)
            tables = self._claim_tables(name, source)
        except (ValueError, PluginLoadError) as exc:
            self.pm.unregister(module)
            raise PluginLoadError(str(exc)) from None
        self._tables.update(tables)
        self.plugins[name] = LoadedPlugin(meta, module, source)

    def _claim_tables(self, name: str, source: str) -> dict[str, tuple[str, type]]:
        """The tables of plugin ``name``'s models, checked: a plugin's tables start with its
        name and ``_`` (``billing_units_team``) so every table says whose it is (the core's
        own tables are exempt), and no table is one the core or another loaded plugin
        declares (``invoice`` may not take the core's ``invoice_line``)."""
        claimed: dict[str, tuple[str, type]] = {}
        for model in self.models_of(name):
            table = model._meta.table_name
            if source != "core" and not table.startswith(f"{name}_"):
                raise PluginLoadError(
                    f"plugin '{name}': model {model.__name__} has the table '{table}'; a "
                    f"plugin's tables start with its name: '{name}_...' "
                    "(see docs/writing-a-plugin.md)"
                )
            owner = self._tables.get(table) or claimed.get(table)
            if owner and owner[1] is not model:
                raise PluginLoadError(
                    f"plugin '{name}': model {model.__name__} has the table '{table}', which "
                    f"plugin '{owner[0]}' declares (model {owner[1].__name__}); a table has "
                    "one owner"
                )
            claimed[table] = (name, model)
        return claimed

    def _declared(self, hook: str) -> list[tuple[str, list]]:
        """Every installed plugin's answer to a ``register_*`` hook (called directly, not
        through pluggy, so each plugin is timed on its own when tracing)."""
        out = []
        tracing = bool(os.environ.get("BILLHIVE_TRACE_HOOKS"))
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            start = time.perf_counter()
            items = impl.function()
            if tracing:
                logging.getLogger("billhive.hooks").warning(
                    "hook %s [%s] done in %.2f ms, %d declared",
                    hook,
                    impl.plugin_name,
                    (time.perf_counter() - start) * 1000,
                    len(items or ()),
                )
            out.append((impl.plugin_name, items))
        return out

    def _collect(self) -> Catalog:
        catalog = Catalog(
            privileges=merge("privilege", self._declared("register_privileges")),
            account_types=merge("account type", self._declared("register_account_types")),
            invoice_formats=merge("invoice format", self._declared("register_invoice_formats")),
            billing_connectors=merge(
                "billing connector", self._declared("register_billing_connectors")
            ),
            default_roles=merge("default role", self._declared("register_default_roles")),
        )
        for plugin, items in self._declared("register_menu_items"):
            catalog.menu_items.extend(Declared(i, plugin) for i in items or ())
        catalog.menu_items.sort(key=lambda d: (d.item.order, d.item.label))
        return catalog

    def _trace(self) -> None:
        """BILLHIVE_TRACE_HOOKS=1 logs every hook call (logger ``billhive.hooks``, level
        WARNING so it shows without any logging set-up): the hook, the plugins that answer
        it in call order and its arguments, then its duration and whether it raised."""
        tracer = logging.getLogger("billhive.hooks")
        local = threading.local()  # hook calls nest, and threads serve requests side by side

        def before(hook_name, hook_impls, kwargs):
            if not hasattr(local, "starts"):
                local.starts = []
            local.starts.append(time.perf_counter())
            # pluggy calls the last registered implementation first
            names = ", ".join(i.plugin_name for i in reversed(hook_impls))
            tracer.warning("hook %s -> [%s] args=%s", hook_name, names, sorted(kwargs))

        def after(outcome, hook_name, hook_impls, kwargs):
            ms = (time.perf_counter() - local.starts.pop()) * 1000
            names = ", ".join(i.plugin_name for i in reversed(hook_impls))
            failed = outcome.exception
            tracer.warning(
                "hook %s [%s] %s in %.2f ms",
                hook_name,
                names,
                f"raised {failed!r}" if failed else "done",
                ms,
            )

        self.pm.add_hookcall_monitoring(before, after)

    def blueprints(self) -> list[tuple[str, object]]:
        return [(plugin, bp) for plugin, bps in self._declared("register_blueprints") for bp in bps]

    def models_of(self, name: str) -> list:
        """The models plugin ``name`` declares: the answers of its registered
        ``register_models`` implementations (whatever the functions are called)."""
        return [
            model
            for impl in self.pm.hook.register_models.get_hookimpls()
            if impl.plugin_name == name
            for model in impl.function() or ()
        ]

    def models(self, only_enabled: bool = False) -> list:
        return [
            m
            for plugin, ms in self._declared("register_models")
            if not only_enabled or plugin in self.enabled
            for m in ms
        ]

    # -- enabled state ---------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Reload the enabled set when another process changed it (one small query)."""
        from core.models import PluginState

        version = _plugins_version.scalar() or 0
        if not force and version == self.version:
            return
        names = {p.name for p in PluginState.select().where(PluginState.enabled)}
        names |= {n for n, p in self.plugins.items() if p.meta.essential}
        self.enabled = frozenset(n for n in names if n in self.plugins)
        self.version = version
        self._callers.clear()

    def is_enabled(self, name: str) -> bool:
        return name in self.enabled

    def get(self, name: str) -> LoadedPlugin:
        if name not in self.plugins:
            known = ", ".join(sorted(n for n in self.plugins if n != CORE_PLUGIN))
            raise NotFound(f"unknown plugin '{name}' (installed: {known or 'none'})")
        return self.plugins[name]

    def license_problem(self, name: str) -> str | None:
        """Why the plugin's licence feature is not covered right now, or None when it is."""
        from core import license_store

        feature = self.get(name).meta.license_feature
        if not feature:
            return None
        return license_store.feature_problem(feature, self.license_key_paths)

    def require_licensed(self, name: str) -> None:
        """Refuse new work of an add-on whose licence no longer covers it (data stays)."""
        problem = self.license_problem(name)
        if problem:
            raise LicenseRequired(problem)

    def set_enabled(self, name: str, enabled: bool, actor=None) -> bool:
        """Enable or disable a plugin for every process; returns False when nothing changed."""
        from core import audit
        from core.models import PluginState, StateVersion

        plugin = self.get(name)
        if plugin.meta.essential:
            raise LicenseRequired(f"plugin '{name}' is part of the core and cannot be disabled")
        if enabled:
            self.require_licensed(name)
        with database.atomic():
            state = PluginState.get_or_none(PluginState.name == name)
            before = bool(state and state.enabled)
            if before == enabled:
                return False
            if state is None:
                PluginState.create(name=name, enabled=enabled)
            else:
                state.enabled = enabled
                state.save()
            if enabled:
                self._create_tables(plugin)
            bumped = (
                StateVersion.update(value=StateVersion.value + 1)
                .where(StateVersion.key == "plugins")
                .execute()
            )
            if not bumped:
                StateVersion.create(key="plugins", value=1)
            audit.record(
                actor,
                "plugin.enable" if enabled else "plugin.disable",
                object_type="plugin",
                object_id=name,
                before={"enabled": before},
                after={"enabled": enabled},
            )
        self.refresh(force=True)
        return True

    def _create_tables(self, plugin: LoadedPlugin) -> None:
        """Inside the enabling transaction: apply the plugin's pending migrations, or create
        its models' tables when it declares none (core.migrations)."""
        migrations.prepare(self, plugin.meta.name)

    # -- calling hooks ---------------------------------------------------------------------

    def hook(self, name: str) -> pluggy.HookCaller:
        """The hook caller for ``name`` with disabled plugins left out."""
        key = (name, self.enabled)
        caller = self._callers.get(key)
        if caller is None:
            disabled = [p.module for n, p in self.plugins.items() if n not in self.enabled]
            caller = self.pm.subset_hook_caller(name, remove_plugins=disabled)
            self._callers[key] = caller
        return caller

    def call(self, name: str, **kwargs) -> list:
        return self.hook(name)(**kwargs)

    def active(self, declared: dict[str, Declared]) -> dict:
        """Declarations of enabled plugins only: ``code -> item``."""
        return {code: d.item for code, d in declared.items() if d.plugin in self.enabled}

    def owner(self, declared: dict[str, Declared], code: str) -> str | None:
        d = declared.get(code)
        return d.plugin if d else None

    def privileges(self) -> dict:
        return self.active(self.catalog.privileges)

    def account_types(self) -> dict:
        return self.active(self.catalog.account_types)

    def invoice_formats(self) -> dict:
        return self.active(self.catalog.invoice_formats)

    def billing_connectors(self) -> dict:
        return self.active(self.catalog.billing_connectors)

    def menu_items(self, where: str) -> list:
        return [
            d.item
            for d in self.catalog.menu_items
            if d.plugin in self.enabled and d.item.where == where
        ]
