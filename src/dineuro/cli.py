"""The ``dineuro`` command line: parses arguments, shows progress, calls one library function a verb.

Library code never prints; this module does. Bad input (:class:`dineuro.errors.InputError`)
becomes one sentence on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from dineuro.errors import InputError

app = typer.Typer(
    help="dineuro: segment 3D light-microscopy stacks of single neurons and trace them into SWC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except InputError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
