"""The command line as a user runs it: help, version, listing, errors in one line."""
import subprocess
import sys

from typer.testing import CliRunner

from attnkit import __version__
from attnkit.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "backends"):
        assert cmd in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"attnkit {__version__}"


def test_backends_lists_every_registry():
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0
    assert "additive" in result.output and "window" in result.output and "alibi" in result.output
    assert "blocksparse" in result.output and "chunked" in result.output


def test_console_script_reports_unknown_command_without_traceback():
    proc = subprocess.run([sys.executable, "-c", "from attnkit.cli import run; run()", "nosuchcommand"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "nosuchcommand" in (proc.stderr + proc.stdout)
