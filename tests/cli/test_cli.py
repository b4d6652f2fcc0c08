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


def test_training_demo_trains_evaluates_and_explains(tmp_path):
    from rich.console import Console

    from attnkit.demos import run_training_demo

    console = Console(record=True, width=120)
    out = run_training_demo(console, tmp_path / "demo", epochs=2)
    text = console.export_text()
    assert "test accuracy" in text and "most weight on:" in text and str(out) in text
    assert (out / "model.safetensors").is_file()
    acc = float(text.split("test accuracy ")[1].split(",")[0])
    assert acc >= 0.9


def test_attention_demo_checks_every_spec_against_float64(tmp_path):
    result = runner.invoke(app, ["demo", "attention"])
    assert result.exit_code == 0, result.output
    assert "float64 reference" in result.output and "chunked" in result.output and "blocksparse" in result.output


def test_unknown_demo_is_one_clear_error():
    proc = subprocess.run([sys.executable, "-c", "from attnkit.cli import run; run()", "demo", "nope"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "unknown demo 'nope'; known: train, attention" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_with_bad_config_prints_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: text_classification\nmodel:\n  encoder: {type: lstm, hidden: -3}\n"
                   "data: {builtin: toy_sentiment}\n", encoding="utf-8")
    for args, message in (([str(tmp_path / "missing.yaml")], "missing.yaml: config file not found"),
                          ([str(bad)], "error: model.encoder.hidden: must be > 0, got -3"),
                          ([str(bad), "--set", "train.epochs"], "expected KEY.PATH=VALUE")):
        proc = subprocess.run([sys.executable, "-c", "from attnkit.cli import run; run()", "train", *args,
                               "--out", str(tmp_path / "run")], capture_output=True, text=True, check=False)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
