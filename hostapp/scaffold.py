"""``billhive new-plugin NAME``: write a ready-to-install plugin package.

The files come from ``scaffold_template/`` next to this module: ``*.tmpl`` files with
``string.Template`` placeholders (``${name}``, ``${package}`` ...), under folders called
``__package__`` and ``__name__`` that take the package's and the plugin's names. Jinja
templates pass through untouched, since only ``$`` is special.
"""

from __future__ import annotations

import keyword
import re
from importlib.metadata import entry_points
from pathlib import Path
from string import Template

import click

from core import HOOK_API_VERSION
from core.plugins import ENTRY_POINT_GROUP

TEMPLATE_DIR = Path(__file__).resolve().parent / "scaffold_template"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


class ScaffoldError(ValueError):
    pass


def placeholders(name: str) -> dict[str, str]:
    if not NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ScaffoldError(
            f"plugin name {name!r}: use 2-40 lower-case letters, digits and underscores, "
            "starting with a letter (it becomes a privilege prefix, a URL and a table prefix)"
        )
    return {
        "name": name,
        "package": f"billhive_{name}",
        "dist": f"billhive-{name.replace('_', '-')}",
        "title": name.replace("_", " ").title(),
        "format_code": f"{name.upper()}_CSV",
        "api_version": str(HOOK_API_VERSION),
    }


def generate(name: str, parent: Path) -> Path:
    """Write the plugin project into ``parent``; returns its folder."""
    values = placeholders(name)
    taken = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        raise ScaffoldError(
            f"plugin name {name!r} is taken by an installed plugin ({taken[name]}); pick another"
        )
    target = Path(parent) / values["dist"]
    if target.exists():
        raise ScaffoldError(f"{target} already exists; nothing was written")
    files = sorted(p for p in TEMPLATE_DIR.rglob("*.tmpl") if p.is_file())
    rendered = []
    for source in files:
        relative = source.relative_to(TEMPLATE_DIR).as_posix()[: -len(".tmpl")]
        relative = relative.replace("__package__", values["package"])
        relative = relative.replace("__name__", values["name"])
        rendered.append((target / relative, Template(source.read_text()).substitute(values)))
    for path, text in rendered:  # every template rendered before anything is written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to create the plugin project in.",
)
def new_plugin(name, parent):
    """Write a ready-to-install plugin package NAME (billhive-NAME/).

    It holds a pyproject.toml with the billhive.plugins entry point, PLUGIN metadata, hooks
    for two privileges and an invoice format, a model with its first migration, a panel page
    with its template and menu entry, and tests using Billhive's core.kit.testing fixtures.
    """
    try:
        target = generate(name, parent)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    values = placeholders(name)
    click.echo(f"Created {target} (plugin '{name}', package {values['package']}). Next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  billhive plugins enable {name}")
    click.echo(f"  cd {target} && python -m pytest")
