"""Threads of the block-sparse kernel on a shared machine: cores other processes hold are
left to them; the estimate is other processes' CPU time, not ours."""
import torch

from attnkit.attention.backends import threads as T


def test_kernel_threads_leave_held_cores_alone():
    assert T.kernel_threads(2, 2, 0.0) == 2  # quiet: every thread
    assert T.kernel_threads(2, 2, 0.3) == 2  # a little background work: not a held core
    assert T.kernel_threads(2, 2, 1.0) == 1  # one busy process on a 2-core machine
    assert T.kernel_threads(8, 8, 2.9) == 5
    assert T.kernel_threads(2, 2, 5.0) == 1  # never fewer than one
    assert T.kernel_threads(4, 16, 3.0) == 4  # enough free cores: unchanged


def test_others_busy_cores_subtracts_our_own_time(monkeypatch):
    monkeypatch.setattr(T, "_state", {})
    assert T.others_busy_cores(now=10.0, reading=(100.0, 5.0)) == 0.0  # first reading: nothing to compare
    # one second later: 2 CPU-seconds busy in all, 1 of them ours -> others hold one core
    assert T.others_busy_cores(now=11.0, reading=(102.0, 6.0)) == 1.0
    # a reading younger than MIN_INTERVAL_S is reused, not recomputed
    assert T.others_busy_cores(now=11.1, reading=(200.0, 6.0)) == 1.0
    assert T.others_busy_cores(now=12.0, reading=(102.5, 6.5)) == 0.0


def test_threads_are_restored_after_the_tiles(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(T, "others_busy_cores", lambda: 64.0)
    seen = []
    with T.threads_for_tiles():
        seen.append(torch.get_num_threads())
    assert seen == [1] or before == 1
    assert torch.get_num_threads() == before


def test_proc_readings_are_numbers_or_none():
    r = T.cpu_seconds()
    assert r is None or (r[0] >= 0 and r[1] >= 0)


def test_an_unknown_reading_counts_no_busy_cores():
    assert T.others_busy_between((10.0, 1.0), None, 2.0) == 0.0
    assert T.others_busy_between(None, (10.0, 1.0), 2.0) == 0.0
    assert T.others_busy_between((10.0, 1.0), (14.0, 2.0), 0.0) == 0.0
    assert T.others_busy_between((10.0, 1.0), (14.0, 2.0), 2.0) == 1.5  # 4 s busy, 1 s ours, over 2 s


def test_busy_time_is_all_cpu_time_but_idle_and_iowait(monkeypatch):
    """``/proc/stat``'s first line: user nice system idle iowait irq softirq steal ...; the
    busy seconds leave idle (4th) and iowait (5th) out."""
    import builtins
    import io

    files = {"/proc/stat": "cpu  100 20 30 4000 500 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8\n",
             "/proc/self/stat": "42 (python x) R 1 2 3 4 5 6 7 8 9 10 70 30 0 0\n"}  # utime, stime: 14th, 15th
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **kw: io.StringIO(files[path]) if path in files
                        else real_open(path, *a, **kw))
    monkeypatch.setattr(T.os, "sysconf", lambda name: 100)
    assert T.cpu_seconds() == ((100 + 20 + 30 + 6 + 7 + 8) / 100, (70 + 30) / 100)


def test_a_second_reading_too_soon_after_the_first_counts_no_busy_cores(monkeypatch):
    monkeypatch.setattr(T, "_state", {})
    assert T.others_busy_cores(now=10.0, reading=(100.0, 5.0)) == 0.0
    assert T.others_busy_cores(now=10.1, reading=(150.0, 5.0)) == 0.0  # no interval measured yet: a number, 0
