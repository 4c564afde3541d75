"""Every command's --help renders, and every option has help text."""

import pytest
import typer
from typer.testing import CliRunner

from tollgate.cli import app

COMMAND = typer.main.get_command(app)


def walk(command, path: tuple[str, ...] = ()):
    # Typer bundles its own copy of click, so groups are recognised by shape, not by class.
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from walk(sub, path + (name,))


ALL = list(walk(COMMAND))


def test_the_cli_has_the_documented_commands():
    names = {" ".join(path) for path, _ in ALL}
    assert {"run", "compile", "models list", "models show", "models promote", "models rollback", "serve",
            "predict", "submit", "schedule", "runs", "report"} <= names


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda p: " ".join(p) or "tollgate")
def test_help_renders(path):
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("path, command", [(p, c) for p, c in ALL if p], ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_option_and_command_has_help(path, command):
    assert command.help, f"{' '.join(path)} has no help text"
    for parameter in command.params:
        if parameter.param_type_name == "option" and parameter.name != "help":
            assert parameter.help, f"{' '.join(path)} {parameter.opts[0]} has no help text"
