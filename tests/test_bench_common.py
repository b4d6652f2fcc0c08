"""The benchmarks' shared plumbing: the host's steal time recorded with every result. And no
benchmark script is named like a standard-library module: with ``benchmarks/`` on the path
(``python benchmarks/X.py`` puts it there), a child Python that inherits the path as
PYTHONPATH (TorchInductor's CPU probe does) cannot start (``benchmarks/encodings.py`` made
every compiled FlexAttention test fail once it was on the path, CI 2026-12-03)."""
import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# loaded by file, not by putting benchmarks/ on this process's path
_spec = importlib.util.spec_from_file_location("attnkit_bench_common", BENCHMARKS / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)


def test_no_benchmark_shadows_a_standard_library_module():
    shadowing = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.stem in sys.stdlib_module_names)
    assert not shadowing, f"rename {shadowing}: a child Python with benchmarks/ on its path would import them"


def test_steal_share_is_the_stolen_part_of_the_ticks_between_two_readings(tmp_path):
    stat = tmp_path / "stat"
    #                user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n")
    before = _common.cpu_ticks(stat)
    assert before == (50, 1000)
    stat.write_text("cpu  400 0 50 900 0 0 0 150 0 0\n")
    after = _common.cpu_ticks(stat)
    assert _common.steal_share(before, after) == 0.2  # 100 of 500 ticks
    assert _common.steal_share(after, after) is None and _common.steal_share(None, after) is None
    stat.write_text("not a stat file\n")
    assert _common.cpu_ticks(stat) is None and _common.cpu_ticks(tmp_path / "absent") is None


def test_results_record_the_steal_share(tmp_path):
    out = _common.write_results("x", [_common.row("n", "m", 1.0)], path=tmp_path / "x.json")
    import json

    share = json.loads(out.read_text())["machine"]["cpu_steal_share"]
    assert share is None or 0.0 <= share <= 1.0
