"""``billhive new-plugin NAME`` writes a plugin package a developer can install, enable and test
at once: it pip-installs (into a throwaway folder, not the shared virtualenv), is found through
its entry point, and its own generated tests pass with the ``core.kit.testing`` fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import hostapp.cli
import hostapp.scaffold
from tests.conftest import PASSWORD, World

RUFF = Path(sys.executable).with_name("ruff")
EXPECTED_FILES = [
    "README.md",
    "billhive_{n}/__init__.py",
    "billhive_{n}/api.py",
    "billhive_{n}/formats.py",
    "billhive_{n}/migrations.py",
    "billhive_{n}/models.py",
    "billhive_{n}/service.py",
    "billhive_{n}/templates/{n}/index.html",
    "billhive_{n}/views.py",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/test_{n}.py",
]


def new_plugin(*args: str):
    return CliRunner().invoke(hostapp.cli.main, ["new-plugin", *args])


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_new_plugin_installs_and_its_generated_tests_pass(tmp_path):
    result = new_plugin("widgets", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    project = tmp_path / "billhive-widgets"
    assert f"Created {project} (plugin 'widgets', package billhive_widgets)" in result.output
    assert f"pip install -e {project}" in result.output
    assert _files(project) == [f.format(n="widgets") for f in EXPECTED_FILES]
    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points."billhive.plugins"]\nwidgets = "billhive_widgets"' in pyproject

    # the generated code is lint-clean under its own ruff settings
    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        lint = subprocess.run([str(RUFF), *args], cwd=project, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # installed like a developer would, but into a folder of its own
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(project)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    [entry_points] = site.glob("billhive_widgets-0.1.0.dist-info/entry_points.txt")
    assert "[billhive.plugins]\nwidgets = billhive_widgets" in entry_points.read_text()

    # its own tests, in its own folder: the plugin is found through its entry point
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout and "error" not in run.stdout


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """A freshly generated plugin importable from sys.path (not installed)."""

    def make(name: str) -> str:
        assert new_plugin(name, "--dir", str(tmp_path)).exit_code == 0
        monkeypatch.syspath_prepend(str(tmp_path / f"billhive-{name}"))
        return f"billhive_{name}"

    yield make
    for module in [m for m in sys.modules if m.startswith("billhive_gadgets")]:
        del sys.modules[module]


def test_a_new_plugin_loads_enables_and_serves_its_page(make_app, generated):
    package = generated("gadgets")
    app = make_app(plugins=[], modules={"gadgets": package})
    host = app.extensions["billhive"].host
    db = app.extensions["billhive"].database
    with app.app_context(), db.connection_context():
        world = World()
        host.set_enabled("gadgets", True)
        assert {"gadgets.view", "gadgets.manage"} <= set(host.privileges())
        assert host.invoice_formats()["GADGETS_CSV"].media_type == "text/csv"
        assert db.table_exists("gadgets_item")
        client = app.test_client()
        client.post("/login", data={"email": world.operator.email, "password": PASSWORD})
        assert client.post("/gadgets/", data={"name": "Sprocket"}).status_code == 302
        page = client.get("/gadgets/").get_data(as_text=True)
        assert "Sprocket" in page and "<h1>Gadgets</h1>" in page


@pytest.mark.parametrize(
    "name,message",
    [
        ("Widgets", "use 2-40 lower-case letters"),
        ("my-plugin", "use 2-40 lower-case letters"),
        ("class", "use 2-40 lower-case letters"),
        ("invoice_pdf", "is taken by an installed plugin (plugins.invoice_pdf)"),
    ],
)
def test_a_bad_or_taken_plugin_name_is_refused(tmp_path, name, message):
    result = new_plugin(name, "--dir", str(tmp_path))
    assert result.exit_code != 0 and message in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "billhive-widgets").mkdir()
    (tmp_path / "billhive-widgets" / "mine.txt").write_text("keep")
    result = new_plugin("widgets", "--dir", str(tmp_path))
    assert result.exit_code != 0 and "already exists; nothing was written" in result.output
    assert _files(tmp_path / "billhive-widgets") == ["mine.txt"]


# -- the built-in plugins follow the layout the scaffold writes --------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: the modules of a plugin package (docs/writing-a-plugin.md, "Layout"); service may be a
#: package when it is big, cli.py is there when the plugin adds commands
LAYOUT = {"__init__", "models", "migrations", "service", "views", "api", "cli", "formats"}
FOLLOWING = ["billing_units", "invoice_pdf", "psa_mapping", "reseller_accounts", "role_wizard"]


def _scaffold_modules() -> set[str]:
    package = Path(hostapp.scaffold.TEMPLATE_DIR) / "__package__"
    return {p.name.removesuffix(".py.tmpl") for p in package.glob("*.py.tmpl")}


def test_the_scaffold_writes_the_layout():
    assert _scaffold_modules() <= LAYOUT
    assert LAYOUT - _scaffold_modules() == {"cli"}  # the one module a new plugin needs not


@pytest.mark.parametrize("plugin", FOLLOWING)
def test_a_built_in_plugin_follows_the_scaffolds_layout(make_app, plugin):
    folder = ROOT / "plugins" / plugin
    modules = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    assert modules <= LAYOUT, f"{plugin}: {sorted(modules - LAYOUT)} are not in the layout"
    templates = folder / "templates"
    if templates.exists():
        assert [p.name for p in templates.iterdir()] == [plugin]
    app = make_app(plugins=[plugin])
    host = app.extensions["billhive"].host
    names = {bp.name for owner, bp in host.blueprints() if owner == plugin}
    assert names <= {plugin, f"{plugin}_api"}
    module = host.get(plugin).module
    models = module.register_models() if hasattr(module, "register_models") else []
    for model in models:
        assert model._meta.table_name.startswith(f"{plugin}_")
    assert hasattr(module, "MIGRATIONS") == bool(models)  # tables come with their history
