"""Plugins use the declared plugin API only: every module of a built-in plugin (plugins/), of an
example distribution (examples/) and of what ``billhive new-plugin`` writes imports nothing of
``core`` or ``hostapp`` but ``core.kit`` and its submodules (docs/writing-a-plugin.md); every
name of ``core.kit`` is in its docstring and in the plugin guide."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import core.kit
from hostapp.scaffold import generate

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIRS = [ROOT / "plugins", ROOT / "examples"]
GUARDED = ("core", "hostapp")
ALLOWED = "core.kit"


def _allowed(module: str) -> bool:
    return module == ALLOWED or module.startswith(ALLOWED + ".")


def forbidden_imports(path: Path, root: Path) -> list[str]:
    """``["plugins/x/views.py:12: from core.models import Account", ...]``: each import of
    ``path`` (at any depth: module level or inside a function) reaching into ``core`` or
    ``hostapp`` anywhere but ``core.kit``."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from core import kit" is core.kit; "from core import rbac" is core.rbac
            bare = node.module in GUARDED
            modules = [f"{node.module}.{a.name}" if bare else node.module for a in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in GUARDED and not _allowed(module):
                where = path.relative_to(root).as_posix()
                found.append(f"{where}:{node.lineno}: {ast.get_source_segment(source, node)}")
                break
    return found


def _modules(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_checker_names_file_and_line_of_each_import_outside_the_kit(tmp_path):
    module = tmp_path / "plugin.py"
    module.write_text(
        "from core.kit import hookimpl\n"
        "from core import kit\n"
        "import core.kit.testing\n"
        "from core.models import Account\n"
        "from core import rbac\n"
        "def cli():\n"
        "    from hostapp.cli import get_app\n"
        "    import core.db\n"
    )
    assert forbidden_imports(module, tmp_path) == [
        "plugin.py:4: from core.models import Account",
        "plugin.py:5: from core import rbac",
        "plugin.py:7: from hostapp.cli import get_app",
        "plugin.py:8: import core.db",
    ]


def test_every_plugin_and_example_imports_only_the_plugin_api():
    modules = _modules(*PLUGIN_DIRS)
    assert len(modules) > 20  # the built-ins and examples/billhive-ubl are all here
    problems = [line for path in modules for line in forbidden_imports(path, ROOT)]
    assert problems == [], "imports outside core.kit:\n" + "\n".join(problems)


@pytest.fixture
def generated(tmp_path) -> Path:
    return generate("widgets", tmp_path)


def test_a_generated_plugin_imports_only_the_plugin_api(generated):
    modules = _modules(generated)
    assert {p.name for p in modules} >= {"__init__.py", "models.py", "views.py", "conftest.py"}
    problems = [line for path in modules for line in forbidden_imports(path, generated)]
    assert problems == [], "imports outside core.kit:\n" + "\n".join(problems)


def test_every_name_of_the_plugin_api_is_documented():
    guide = (ROOT / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    assert [n for n in core.kit.__all__ if not hasattr(core.kit, n)] == []
    assert [n for n in core.kit.__all__ if f"``{n}" not in core.kit.__doc__] == []
    assert [n for n in core.kit.__all__ if f"`{n}" not in guide] == []
