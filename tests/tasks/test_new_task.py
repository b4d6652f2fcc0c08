"""Proof that a task is one unit: ``sequence_regression.py`` (a task in a file of its own,
unknown to attnkit) trains, evaluates, predicts and gets a report through the CLI."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.errors import ConfigError
from attnkit.tasks import get_task

HERE = Path(__file__).parent
TASK = "sequence_regression:SequenceRegression"
WORDS = {"great": 2.0, "good": 1.0, "fine": 0.0, "bad": -1.0, "awful": -2.0}


def write_table(path: Path, n: int, seed: int) -> None:
    """Texts whose target is the sum of their words' values (a learnable regression)."""
    rnd = random.Random(seed)
    rows = ["text\tlabel"]
    for _ in range(n):
        words = [rnd.choice(list(WORDS)) for _ in range(rnd.randint(1, 4))]
        # continuous targets: dev holds values train never saw (the pre-flight check must not object)
        rows.append(f"{' '.join(words)}\t{sum(WORDS[w] for w in words) / 2 + rnd.uniform(-0.01, 0.01):.4f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def regression_config(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    write_table(tmp_path / "train.tsv", 300, 0)
    write_table(tmp_path / "dev.tsv", 60, 1)
    cfg = {"task": TASK, "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
           "model": {"encoder": {"dim": 16, "encoder": "gru"}},
           "train": {"epochs": 6, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.02}}}
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_task_in_one_file_works_through_the_cli(regression_config, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(regression_config), "--out", str(run)])
    assert r.exit_code == 0, r.output
    ev = json.loads((run / "eval.json").read_text())
    assert ev["dev"]["mse"] < 0.2, ev  # targets have variance ~1: the model learned the word values
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["metric"] == "mse"  # the task's default metric, and lower is better
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r_ for r_ in records if r_.get("kind") == "epoch"]
    assert ev["dev"]["mse"] == pytest.approx(min(e["dev_mse"] for e in epochs), rel=1e-4)  # best = lowest

    r = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "dev.tsv")])
    assert r.exit_code == 0, r.output
    assert "mse" in r.output and json.loads((run / "eval-dev.tsv.json").read_text())["n"] == 60

    r = runner.invoke(app, ["predict", str(run), "great great", "awful bad", "--json"])
    assert r.exit_code == 0, r.output
    values = [json.loads(line)["value"] for line in r.output.strip().splitlines()]
    assert values[0] > 1.0 and values[1] < -0.5, values

    (run / "report.html").unlink()
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "mse" in page and "true " in page and "gradient x input" in page


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown task .summarization.; known: image_classification, .*"
                                          "text_classification, token_classification, translation"):
        get_task("summarization")


def test_a_task_reference_that_does_not_import_says_so():
    with pytest.raises(ConfigError, match="cannot be loaded .*module.path:ClassName"):
        get_task("no_such_module_here:Task")
