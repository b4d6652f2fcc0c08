"""``attnkit tune``: a search over a config's tune: section on Optuna — trials, pruning on the
per-epoch dev metric, a SQLite study that resumes and that two processes share, the results
table and a best config that trains."""
import csv
import subprocess

import pytest
import yaml

optuna = pytest.importorskip("optuna", reason="attnkit tune needs optuna (pip install attnkit[tune])")

from attnkit.errors import ConfigError  # noqa: E402
from attnkit.run.training import resolve_config  # noqa: E402
from attnkit.run.tune import tune  # noqa: E402
from tests.fuzz.contract import invoke  # noqa: E402
from tests.serve.test_server import CLI  # noqa: E402


def config(tmp_path, files, space=None, epochs=2):
    p = tmp_path / "search.yaml"
    p.write_text(yaml.safe_dump({
        "task": "text_classification",
        "data": {"train": str(files["train"]), "dev": str(files["dev"]), "text_column": "sentence"},
        "model": {"embedding": {"dim": 8}, "encoder": {"type": "lstm", "hidden": 8}, "pooler": {"type": "attention"}},
        "train": {"epochs": epochs, "batch_size": 32, "report": False, "optimizer": {"name": "adam", "lr": 0.01}},
        "tune": space or {"train.optimizer.lr": {"log_uniform": [1.0e-3, 5.0e-2]},
                          "model.encoder.hidden": {"choice": [4, 8]}}}))
    return p


def test_a_search_resumes_to_its_total_and_writes_a_best_config_that_trains(tmp_path, text_files_s):
    cfg = config(tmp_path, text_files_s)
    out = tmp_path / "search"
    first = tune(cfg, trials=2, out=out)
    assert len(first["trials"]) == 2
    again = tune(cfg, trials=4, out=out)  # the same study: two more, not four
    assert [r["trial"] for r in again["trials"]] == [0, 1, 2, 3]
    assert all(r["state"] in ("complete", "pruned") for r in again["trials"])
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4 and {"trial", "state", "accuracy", "epochs", "train.optimizer.lr"} <= set(rows[0])
    best = again["best"]
    complete = [r for r in again["trials"] if r["state"] == "complete"]
    assert best["value"] == max(r["accuracy"] for r in complete)
    written = resolve_config(out / "best.yaml")  # ready to train: no tune section, the best values in place
    assert written.train.optimizer.lr == pytest.approx(best["params"]["train.optimizer.lr"])
    assert written.model.encoder["hidden"] == best["params"]["model.encoder.hidden"]
    assert "tune" not in yaml.safe_load((out / "best.yaml").read_text())


def test_trials_are_pruned_on_their_per_epoch_dev_metric(tmp_path, text_files_s):
    cfg = config(tmp_path, text_files_s, epochs=3)
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # accuracy is never >= 2: prune at the first report
    with pytest.raises(ConfigError, match="no trial of .* finished"):
        tune(cfg, trials=2, out=tmp_path / "o", pruner=always)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'o' / 'study.sqlite'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)  # stopped after epoch 1 of 3


@pytest.mark.parametrize("space, says", [
    ({"train.optimizer.lr": {"gaussian": [0, 1]}}, "unknown search distribution 'gaussian'"),
    ({"train.optimizer.lr": {"log_uniform": [0.0, 1.0]}}, "a log scale needs low > 0"),
    ({"train.optimizer.lr": {"uniform": [0.5, 0.1]}}, "is not [low, high] with low < high"),
    ({"train.optimizer.lr": {"choice": []}}, "give a list"),
    ({"train.optimizer.lr": 0.01}, "give one distribution"),
    ({"train.optimizer.lrr": {"uniform": [0.1, 0.5]}}, "tune.train.optimizer.lrr: 0.1 does not make a valid config"),
    ({"train.epochs": {"int": [-2, 3]}}, "tune.train.epochs: -2 does not make a valid config"),
])
def test_a_bad_search_space_is_one_clear_error_before_any_training(tmp_path, text_files_s, space, says):
    cfg = config(tmp_path, text_files_s, space=space)
    out = invoke(["tune", str(cfg), "--trials", "1", "--out", str(tmp_path / "o")])
    assert out.kind == "clean_error" and says in out.err, out.err
    assert not list((tmp_path / "o").glob("trial-*"))


def test_a_config_without_a_tune_section_is_refused_and_one_with_it_still_trains(tmp_path, text_files_s):
    cfg = config(tmp_path, text_files_s)
    plain = tmp_path / "plain.yaml"
    data = yaml.safe_load(cfg.read_text())
    del data["tune"]
    plain.write_text(yaml.safe_dump(data))
    out = invoke(["tune", str(plain)])
    assert out.kind == "clean_error" and "needs a tune: section" in out.err
    assert resolve_config(cfg).train.optimizer.lr == 0.01  # `attnkit train` ignores the search space


def test_two_processes_work_on_one_sqlite_study(tmp_path, text_files_s):
    cfg = config(tmp_path, text_files_s)
    study = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([*CLI, "tune", str(cfg), "--trials", "6", "--study", str(study), "--out",
                               str(tmp_path / f"out{i}"), "--seed", str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    st = optuna.load_study(study_name="search", storage=f"sqlite:///{study}")
    finished = [t for t in st.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert 6 <= len(finished) <= 7  # the total is the study's (one extra when both start the last one at once)
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # both processes ran trials
    assert len({t.number for t in st.trials}) == len(st.trials)
