"""The ``tollgate`` command line. Each group of commands lives in its own module."""

from __future__ import annotations

import sys

import typer

from tollgate import __version__
from tollgate.cli import cluster, models, monitor, report, run, serve

app = typer.Typer(name="tollgate", no_args_is_help=True, add_completion=False,
                  help="Tollgate: a gated KFP v2 training pipeline for tabular classification, served by KServe.")
app.command("run")(run.run)
app.command("compile")(run.compile)
app.add_typer(models.app, name="models")
app.command("submit")(cluster.submit)
app.command("schedule")(cluster.schedule)
app.command("runs")(cluster.runs)
app.command("report")(report.report)
app.command("serve")(serve.serve)
app.command("predict")(serve.predict)
app.command("monitor")(monitor.monitor)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Tollgate's commands."""


def main() -> None:
    """Entry point of the ``tollgate`` script (and ``python -m tollgate.cli``)."""
    # kserve parses sys.argv when it is first imported (see tollgate.serving) and would reject
    # `predict --protocol rest-v1`. Typer gets the arguments explicitly and sys.argv keeps only
    # the program name, so whichever command imports kserve, whenever, sees no flags. (Importing
    # kserve up front did the same, but cost every command a second, `tollgate run` included,
    # which never needs kserve in its own process.)
    original = sys.argv
    sys.argv = original[:1]
    try:
        app(args=original[1:])
    finally:
        sys.argv = original
