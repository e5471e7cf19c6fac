"""The `esi` root command: mounts one Typer app per module in `commands/` (lazy: no heavy imports here)."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import commands
from esi_tools import __version__
from esi_tools.console import set_quiet

from ._options import set_debug

# Pipeline order for `esi --help`; any other command module is listed after these.
ORDER = ["download", "ingest", "features", "retrieve", "caption", "audit", "pretrain", "embed", "probe", "identify", "report"]

app = typer.Typer(
    name="esi",
    help="ECG Semantic Integrator toolkit: ECGs -> measurements -> retrieved knowledge -> captions -> "
    "ECG-text foundation model -> evaluation. Each command writes one versioned artifact directory and "
    "prints its path on stdout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"esi-tools {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or log lines on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    set_quiet(quiet)
    set_debug(debug)


def _command_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_") and m.name != "main"]
    return [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)


for _name in _command_modules():
    app.add_typer(importlib.import_module(f"commands.{_name}").app)
