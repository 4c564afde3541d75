"""Options and helpers shared by every CLI command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tollgate.config import TollgateConfig, load_config
from tollgate.errors import TollgateError

console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file merged over the built-in defaults.",
                            exists=False, dir_okay=False)
RegistryOption = typer.Option(None, "--registry", help="Registry URI: a local directory or s3://bucket/prefix (prefix optional). "
                              "Default: registry.uri from the config.")
ModelNameOption = typer.Option(None, "--model-name", help="Registered model name. Default: model_name from the config.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of tables (for scripts).")


def load(config_path: Path | None, **overrides: Any) -> TollgateConfig:
    """Load the config with dotted-path overrides from CLI options (None means 'not given')."""
    return load_config(config_path, {k.replace("__", "."): v for k, v in overrides.items()})


def emit_json(value: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(error: Exception) -> None:
    """Print an expected error without a traceback and exit with status 1."""
    err_console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def guarded(func):
    """Decorator: TollgateErrors become a one-line message and exit code 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TollgateError as exc:
            fail(exc)

    return wrapper
