"""The ``attnkit`` command line."""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from . import __version__
from .errors import AttnkitError

app = typer.Typer(help="attnkit: programmable attention, models, training and deployment on PyTorch.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
_state = {"debug": False}


def _version(value: bool):
    if value:
        console.print(f"attnkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of attnkit errors."),
):
    """attnkit command line."""
    _state["debug"] = debug


@app.command()
def demo():
    """Run the programmable-attention demo on embedded (generated) data: no download."""
    from .demo import run_demo

    run_demo(console)


@app.command()
def backends():
    """List the registered scores, masks, modifiers and backends."""
    from .attention import list_backends, list_masks, list_mods, list_scores

    for name, items in (("scores", list_scores()), ("masks", list_masks()), ("mods", list_mods()),
                        ("backends", list_backends())):
        console.print(f"[bold]{name}[/]: {', '.join(items)}")


def run() -> None:
    """Entry point: attnkit errors print as one line (traceback only with --debug); usage
    errors as typer/click show them (exit code 2)."""
    try:
        app()  # standalone mode: usage errors print and exit by themselves
    except AttnkitError as e:
        if _state["debug"]:
            raise
        Console(stderr=True).print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
