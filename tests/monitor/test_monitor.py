"""``attnkit monitor`` end to end on the session's text run: scores once, resumes after a kill
without losing or double-counting, alerts on a turn with its texts explained, drift on a
domain change, and one clear message for each kind of bad input."""
import json
import random
import sqlite3
from collections import Counter
from datetime import datetime, timezone

import pytest

from attnkit.errors import AttnkitError
from attnkit.monitor import Monitor, MonitorSettings, monitor
from attnkit.monitor import watcher as monitor_module
from tests.fuzz.contract import invoke

from tests.serve.test_server import CLI

from .conftest import records, write_jsonl

QUIET = MonitorSettings(dashboard=False)


def day_of(ts: str) -> str:
    return ts[:10]


def test_the_index_is_the_share_of_predicted_labels_per_entity_and_day(text_run, tmp_path):
    rows = records(days=10, per_day=12)
    stream = write_jsonl(tmp_path / "s.jsonl", rows)
    summary = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert summary.new_texts == len(rows) and summary.total_texts == len(rows)
    # independent reference: the stored labels grouped by hand
    db = sqlite3.connect(tmp_path / "out" / "state.sqlite")
    labels = {(e, t): lab for e, t, lab in db.execute("SELECT entity, text, label FROM texts")}
    expected: dict = {}
    for r in rows:
        c = expected.setdefault((r["entity"], day_of(r["timestamp"])), Counter())
        c[labels[(r["entity"], r["text"])]] += 1
    for entity, points in summary.index.items():
        for p in points:
            c = expected[(entity, p["period"])]
            assert p["n"] == sum(c.values())
            assert p["index"] == pytest.approx((c["pos"] - c["neg"]) / p["n"], abs=1e-4)
    assert sum(len(v) for v in summary.index.values()) == len(expected)


def test_a_second_run_scores_only_what_is_new(text_run, tmp_path):
    rows = records(days=12)
    stream = write_jsonl(tmp_path / "s.jsonl", rows[:200])
    first = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    again = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert (first.new_texts, again.new_texts, again.total_texts) == (200, 0, 200)
    write_jsonl(stream, rows[200:], mode="a")
    third = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert third.new_texts == len(rows) - 200 and third.total_texts == len(rows)
    whole = monitor(text_run, write_jsonl(tmp_path / "all.jsonl", rows), tmp_path / "out2", settings=QUIET,
                    progress=False)
    assert whole.index == third.index


def test_a_kill_mid_run_loses_nothing_and_counts_nothing_twice(text_run, tmp_path, monkeypatch):
    rows = records(days=20, per_day=40)  # 1,600 records: 4 chunks of 512
    stream = write_jsonl(tmp_path / "s.jsonl", rows)
    real = monitor_module.score_texts
    calls = {"n": 0}

    def dies_on_the_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a kill between two committed batches
        return real(*a, **k)

    monkeypatch.setattr(monitor_module, "score_texts", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    db = sqlite3.connect(tmp_path / "out" / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM texts").fetchone()[0] == 1024
    db.close()
    monkeypatch.setattr(monitor_module, "score_texts", real)
    resumed = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert resumed.new_texts == len(rows) - 1024 and resumed.total_texts == len(rows)
    # the same state as one uninterrupted run
    whole = monitor(text_run, stream, tmp_path / "out2", settings=QUIET, progress=False)
    assert whole.index == resumed.index


def test_a_rewritten_stream_is_read_again_without_double_counting(text_run, tmp_path):
    rows = records(days=6)
    stream = write_jsonl(tmp_path / "s.jsonl", rows)
    monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    write_jsonl(stream, [{"timestamp": "2025-12-31T00:00:00Z", "entity": "NEW", "text": "a good film"}, *rows])
    again = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert again.new_texts == 1 and again.duplicates == len(rows) and "NEW" in again.index
    assert again.out_of_order == 1  # the new record is older than what was read; the re-read ones are not late


def test_appends_to_a_small_file_are_read_once(text_run, tmp_path):
    # the start-of-file fingerprint covers the bytes read so far, so a file under 4 KB that
    # grows is not mistaken for a rewritten one
    stream = tmp_path / "s.jsonl"
    rows = records(days=2, per_day=3)
    total = 0
    for i, r in enumerate(rows):
        write_jsonl(stream, [r], mode="a")
        total += 1
        got = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
        assert (got.new_texts, got.duplicates, got.out_of_order, got.total_texts) == (1, 0, 0, total), i
    assert stream.stat().st_size < 4096


def test_texts_and_their_position_are_committed_together(text_run, tmp_path):
    stream = write_jsonl(tmp_path / "s.jsonl", records(days=2))
    out = tmp_path / "out"
    out.mkdir()
    db = sqlite3.connect(out / "state.sqlite")
    from attnkit.monitor.state import SCHEMA

    db.executescript(SCHEMA)
    db.execute("CREATE TRIGGER fail BEFORE INSERT ON streams BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="disk gone"):
        monitor(text_run, stream, out, settings=QUIET, progress=False)
    db = sqlite3.connect(out / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM texts").fetchone()[0] == 0  # the texts' insert was rolled back too
    db.close()


def test_weeks_are_named_by_their_monday_and_do_not_split_at_new_year(text_run, tmp_path):
    stream = write_jsonl(tmp_path / "s.jsonl", [
        {"timestamp": f"{d}T12:00:00Z", "text": "a good film"} for d in
        ("2025-12-29", "2025-12-31", "2026-01-01", "2026-01-04", "2026-01-05")])
    weekly = monitor(text_run, stream, tmp_path / "w", settings=MonitorSettings(period="week", dashboard=False),
                     progress=False)
    assert [(p["period"], p["n"]) for p in weekly.index["(all)"]] == [("2025-12-29", 4), ("2026-01-05", 1)]


def test_a_new_entity_is_said_once(text_run, tmp_path, caplog):
    stream = write_jsonl(tmp_path / "s.jsonl", records(days=1, entities=("ACME",)))
    monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    write_jsonl(stream, [{"timestamp": "2026-01-02", "entity": "ZETA", "text": "good"},
                         {"timestamp": "2026-01-02T01:00:00", "entity": "ZETA", "text": "bad"}], mode="a")
    with caplog.at_level("INFO", logger="attnkit"):
        monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert caplog.text.count("new entity 'ZETA'") == 1 and f"{stream}:21: new entity 'ZETA'" in caplog.text


def test_a_turn_raises_one_alert_with_its_texts_explained(text_run, tmp_path):
    rows = records(days=40, per_day=30, negative=lambda e, d: 0.8 if (e == "BETA" and d >= 28) else 0.2)
    stream = write_jsonl(tmp_path / "s.jsonl", rows)
    summary = monitor(text_run, stream, tmp_path / "out", progress=False)
    turns = [a for a in summary.alerts if a["kind"] == "sentiment"]
    beta = [a for a in turns if a["entity"] == "BETA" and a["period"] >= "2026-01-29"]
    assert beta and beta[0]["direction"] == "down" and beta[0]["period"] <= "2026-01-31"
    assert not [a for a in turns if a["entity"] == "ACME"]
    texts = beta[0]["texts"]
    assert texts and all(t["label"] == "neg" for t in texts)
    assert all(beta[0]["since"] <= t["time"][:10] <= beta[0]["period"] for t in texts)
    assert len({t["text"] for t in texts}) == len(texts)
    assert all(len(t["tokens"]) == len(t["scores"]) == len(t["text"].split()) for t in texts)
    assert all(set(t["words"]) <= set(t["tokens"]) for t in texts)
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["period"] for x in lines] == [a["period"] for a in summary.alerts]
    html = (tmp_path / "out" / "dashboard.html").read_text()
    assert "sentiment turned <b>down</b>" in html and html.count("<img") == 3  # 2 entities + drift
    # alerts already raised are not raised again, nor the same turn dated a period later
    assert monitor(text_run, stream, tmp_path / "out", progress=False).new_alerts == []
    from attnkit.monitor import Monitor as M

    m = M(text_run, stream, tmp_path / "out", settings=QUIET)
    try:
        later = {**beta[0], "period": "2026-02-01", "since": beta[0]["period"]}
        assert m._unraised([later]) == []
        other = {**beta[0], "direction": "up", "period": "2026-02-01", "since": "2026-02-01"}
        assert m._unraised([other]) == [other]
    finally:
        m.close()


def gibberish(rng: random.Random, positive: bool) -> str:
    return " ".join("".join(rng.choice("qxzjkv") for _ in range(6)) for _ in range(rng.randint(12, 20)))


def test_a_domain_change_is_flagged_as_drift_on_its_first_day(text_run, tmp_path):
    normal = records(days=10, per_day=40, entities=("ACME",))
    changed = records(days=14, per_day=40, entities=("ACME",), text=gibberish, seed=1)[10 * 40:]
    stream = write_jsonl(tmp_path / "s.jsonl", normal + changed)
    summary = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    drift = [a for a in summary.alerts if a["kind"] == "drift"]
    assert drift and drift[0]["period"] == "2026-01-11", drift
    assert {"unknown", "words"} <= set(drift[0]["features"])
    assert all(a["period"] >= "2026-01-11" for a in drift)
    assert drift[0]["texts"]  # the least confident texts of the day, explained


def test_texts_out_of_order_and_unknown_entities_are_accepted_and_said(text_run, tmp_path, caplog):
    rows = records(days=3)
    rows.insert(39, rows.pop(5))  # a late arrival: line 40 is older than the lines before it
    stream = write_jsonl(tmp_path / "s.jsonl", rows)
    with caplog.at_level("WARNING", logger="attnkit"):
        summary = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert summary.out_of_order == 1 and "earlier than one before them (first at line 40)" in caplog.text
    write_jsonl(stream, [{"timestamp": "2026-01-04", "entity": "NEVER-SEEN", "text": "good"}], mode="a")
    assert "NEVER-SEEN" in monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False).index


def test_bad_lines_are_skipped_and_named_and_the_rest_is_scored(text_run, tmp_path, caplog):
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"timestamp": "2026-01-01", "text": "good film"}\n{"text": "no time"}\n'
                      '{"timestamp": "last tuesday", "text": "x"}\n', encoding="utf-8")
    with caplog.at_level("WARNING", logger="attnkit"):
        summary = monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    assert summary.new_texts == 1 and summary.skipped == 2
    assert f"{stream}:2: skipped: no timestamp" in caplog.text and f"{stream}:3: skipped: timestamp 'last tuesday'" \
        in caplog.text
    assert summary.index["(all)"][0]["n"] == 1


@pytest.mark.parametrize("argv, says", [
    (["--period", "month"], "--period: unknown period 'month'"),
    (["--detector", "magic"], "--detector: unknown detector 'magic'"),
    (["--sensitivity", "0"], "--sensitivity 0.0: must be > 0"),
    (["--positive", "great"], "--positive 'great': not one of the run's labels (neg, pos)"),
])
def test_bad_options_are_one_clear_error(text_run, tmp_path, argv, says):
    stream = write_jsonl(tmp_path / "s.jsonl", records(days=1))
    out = invoke(["monitor", str(text_run), "--stream", str(stream), "--out", str(tmp_path / "o"), *argv])
    assert out.kind == "clean_error" and says in out.err, out.err


def test_a_missing_stream_a_tagger_and_a_state_from_another_run_are_refused(text_run, transformer_run, tagger_run,
                                                                              tmp_path):
    stream = write_jsonl(tmp_path / "s.jsonl", records(days=1))
    out = invoke(["monitor", str(text_run), "--stream", str(tmp_path / "none.jsonl")])
    assert out.kind == "clean_error" and "none.jsonl not found" in out.err
    out = invoke(["monitor", str(tagger_run), "--stream", str(stream)])
    assert out.kind == "clean_error" and "needs a text classifier" in out.err
    monitor(text_run, stream, tmp_path / "out", settings=QUIET, progress=False)
    with pytest.raises(AttnkitError, match="holds texts scored by .*cannot mix them"):
        Monitor(transformer_run, stream, tmp_path / "out", settings=QUIET)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(AttnkitError, match="junk.sqlite is not a monitor state database"):
        Monitor(text_run, stream, tmp_path / "out3", state=tmp_path / "junk.sqlite", settings=QUIET)


def test_the_cli_prints_the_index_and_alerts_and_writes_its_files(text_run, tmp_path):
    rows = records(days=30, per_day=30, negative=lambda e, d: 0.85 if (e == "ACME" and d >= 20) else 0.15)
    stream = write_jsonl(tmp_path / "news.jsonl", rows)
    out = invoke(["monitor", str(text_run), "--stream", str(stream)])
    assert out.code == 0, out.err
    assert f"{len(rows):,} new text(s) scored" in out.out and "ACME: 2026-01-30 index" in out.out
    assert "alert ACME 2026-01-2" in out.out and "sentiment down" in out.out
    folder = tmp_path / "news-monitor"
    assert {p.name for p in folder.iterdir()} >= {"state.sqlite", "alerts.jsonl", "dashboard.html"}
    again = invoke(["monitor", str(text_run), "--stream", str(stream)])
    assert "0 new text(s) scored" in again.out and "alert ACME" not in again.out


def test_times_are_bucketed_in_utc_by_the_chosen_period(text_run, tmp_path):
    stream = write_jsonl(tmp_path / "s.jsonl", [
        {"timestamp": "2026-03-01T23:30:00-02:00", "text": "good"},  # 01:30 UTC on the 2nd
        {"timestamp": datetime(2026, 3, 2, 5, tzinfo=timezone.utc).timestamp(), "text": "bad"}])
    hourly = monitor(text_run, stream, tmp_path / "h", settings=MonitorSettings(period="hour", dashboard=False),
                     progress=False)
    assert [p["period"] for p in hourly.index["(all)"]] == ["2026-03-02T01:00", "2026-03-02T05:00"]
    daily = monitor(text_run, stream, tmp_path / "d", settings=QUIET, progress=False)
    assert [(p["period"], p["n"]) for p in daily.index["(all)"]] == [("2026-03-02", 2)]


def test_follow_scores_lines_as_they_are_appended_and_stops_cleanly_on_sigterm(text_run, tmp_path):
    import signal
    import subprocess
    import threading
    import time

    rows = records(days=4)
    stream = write_jsonl(tmp_path / "s.jsonl", rows[:60])
    proc = subprocess.Popen([*CLI, "monitor", str(text_run), "--stream", str(stream), "--out", str(tmp_path / "out"),
                             "--follow", "--poll-s", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def wait_for(text):
        deadline = time.time() + 120
        while not any(text in x for x in lines) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        return any(text in x for x in lines)

    try:
        assert wait_for("60 new text(s) scored (60 in the state)"), lines
        write_jsonl(stream, rows[60:], mode="a")
        assert wait_for(f"{len(rows) - 60} new text(s) scored ({len(rows)} in the state)"), lines
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and not any("Traceback" in x for x in lines), lines
