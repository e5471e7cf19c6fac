"""Options and plumbing shared by every command: input paths (`-` = stdin), --out/--force, error mapping."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import traceback
from pathlib import Path

import typer

from esi_tools.console import console, styled
from esi_tools.errors import EsiError, InputError

_state = {"debug": bool(os.environ.get("ESI_DEBUG"))}


def set_debug(debug: bool) -> None:
    _state["debug"] = debug or _state["debug"]


def esi_command(fn):
    """Map library errors to one red line on stderr and the error's exit code (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except EsiError as exc:
            if _state["debug"]:
                raise
            console.print(styled(exc.label, "red" if exc.label == "error:" else "yellow", str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print(styled("interrupted:", "red", "nothing was written"))
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug, not bad input: still one line unless --debug
            if _state["debug"]:
                raise
            where = traceback.extract_tb(exc.__traceback__)[-1]
            text = (str(exc).strip().splitlines() or [""])[0]
            filename = getattr(exc, "filename", None)  # OSError and friends: name the file when known
            if filename and str(filename) not in text:
                text = f"{filename}: {text}"
            console.print(styled(
                "internal error:", "red",
                f"{type(exc).__name__}: {text} (at {Path(where.filename).name}:{where.lineno}; "
                f"rerun with --debug for the traceback)",
            ))
            raise typer.Exit(70) from None

    return wrapper


_stdin_lines: list[str] = []


def resolve_input(value: str | Path) -> Path:
    """An input artifact path; `-` takes the next line of stdin (so `esi ingest … | esi features -` works)."""
    text = str(value)
    if text == "-":
        if not _stdin_lines:
            _stdin_lines.extend(line.strip() for line in sys.stdin.read().splitlines() if line.strip())
        if not _stdin_lines:
            raise InputError("'-' given but stdin holds no artifact path")
        text = _stdin_lines.pop(0)
    return Path(text)


def default_out(kind: str, *parts) -> Path:
    """`./artifacts/<kind>-<hash of inputs and parameters>` when --out is not given."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts], sort_keys=True).encode()).hexdigest()[:12]
    return Path(os.environ.get("ESI_ARTIFACTS", "artifacts")) / f"{kind}-{digest}"


def emit(path: Path) -> None:
    """The one line a command writes on stdout: the artifact it made."""
    typer.echo(str(path))


OutOption = typer.Option(None, "--out", "-o", help="Artifact directory to write (default: ./artifacts/<kind>-<hash>).")
ForceOption = typer.Option(False, "--force", help="Replace --out if it exists.")
WorkersOption = typer.Option(
    max(1, min(4, os.cpu_count() or 1)), "--workers", "-j", min=1, help="Parallel worker processes."
)
EmbeddingsOption = typer.Option(
    [], "--embeddings", "-e", help="Embeddings artifact(s), evaluated side by side (repeat)."
)
NamesOption = typer.Option([], "--name", help="Table label per --embeddings, in order (default: its source).")
