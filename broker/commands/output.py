"""Shared output for the CLI: Spanish messages to people, JSON to machines, one exit-code policy."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def fail(code: str, message: str, hint: str | None = None, exit_code: int = 2) -> NoReturn:
    """Stop the command with a coded Spanish error (and how to fix it), never a traceback."""
    err_console.print(f"[bold red]error[/] {code}: {message}")
    if hint:
        err_console.print(f"  sugerencia: {hint}")
    raise typer.Exit(exit_code)
