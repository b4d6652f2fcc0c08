"""The micro-batcher on its own: batches fill up to max_batch_size or max_wait, every caller
gets its own results in order, a full queue refuses at once, given-up requests cost nothing,
and drain answers everything queued."""
import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from attnkit.serve.batcher import MicroBatcher, QueueFull
from attnkit.serve.models import length_groups


class Recorder:
    """A fake model: records each batch, answers ``text.upper()`` and the top_k."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.batches, self.delay, self.gate = [], delay, gate

    def __call__(self, texts, ks):
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        self.batches.append(list(texts))
        return [{"text": t.upper(), "k": k} for t, k in zip(texts, ks)]


def _batcher(fn, executor, **kw):
    opts = dict(max_batch_size=8, max_wait_s=0.05, max_queue=100)
    opts.update(kw)
    b = MicroBatcher(fn, executor, **opts)
    b.start()
    return b


def test_concurrent_requests_are_batched_and_answered_in_order():
    async def main():
        fn, sizes = Recorder(delay=0.01), []
        with ThreadPoolExecutor(1) as ex:
            b = _batcher(fn, ex, on_batch=sizes.append)

            async def client(i):
                texts = [f"r{i}-{j}" for j in range(1 + i % 3)]
                got = await asyncio.gather(*b.submit(texts, top_k=i))
                assert [g["text"] for g in got] == [t.upper() for t in texts]
                assert all(g["k"] == i for g in got)
                return len(texts)

            counts = await asyncio.gather(*(client(i) for i in range(20)))
            await b.drain()
        assert sum(sizes) == sum(counts) == sum(len(x) for x in fn.batches)
        assert max(sizes) > 1, "concurrent requests were never run together"
        assert max(sizes) <= 8
    asyncio.run(main())


def test_batching_off_runs_one_text_at_a_time():
    async def main():
        fn = Recorder()
        with ThreadPoolExecutor(1) as ex:
            b = _batcher(fn, ex, max_batch_size=1, max_wait_s=0.0)
            await asyncio.gather(*[f for i in range(6) for f in b.submit([f"t{i}"], 1)])
            await b.drain()
        assert [len(x) for x in fn.batches] == [1] * 6
    asyncio.run(main())


def test_a_lone_request_runs_at_once_and_one_among_many_waits_at_most_max_wait():
    async def main():
        with ThreadPoolExecutor(1) as ex:
            fn = Recorder()
            b = _batcher(fn, ex, max_batch_size=64, max_wait_s=1.0)
            t0 = time.perf_counter()
            await asyncio.gather(*b.submit(["alone"], 1))
            alone = time.perf_counter() - t0  # no request before it: nobody to wait for
            futures = [f for i in range(10) for f in b.submit([f"burst{i}"], 1)]  # requests close together
            await asyncio.gather(*futures)
            t0 = time.perf_counter()
            await asyncio.gather(*b.submit(["after the burst"], 1))
            waited = time.perf_counter() - t0  # others came often: it waits for company, up to max_wait
            await b.drain()
        assert alone < 0.5 and 0.9 <= waited < 5.0, (alone, waited)
        assert b.gap_seconds < 1.0
    asyncio.run(main())


def test_full_queue_refuses_at_once_and_queues_nothing():
    async def main():
        gate = threading.Event()
        with ThreadPoolExecutor(1) as ex:
            b = _batcher(Recorder(gate=gate), ex, max_batch_size=2, max_wait_s=0.0, max_queue=4)
            first = b.submit(["a", "b"], 1)  # taken into the (blocked) model
            await asyncio.sleep(0.05)
            queued = b.submit(["c", "d", "e", "f"], 1)
            with pytest.raises(QueueFull) as e:
                b.submit(["g"], 1)
            assert e.value.retry_after >= 1
            assert len(b.queue) == 4
            gate.set()
            assert [r["text"] for r in await asyncio.gather(*first, *queued)] == list("ABCDEF")
            await b.drain()
    asyncio.run(main())


def test_requests_given_up_on_are_not_run():
    async def main():
        gate = threading.Event()
        fn = Recorder(gate=gate)
        with ThreadPoolExecutor(1) as ex:
            b = _batcher(fn, ex, max_batch_size=1, max_wait_s=0.0)
            busy = b.submit(["busy"], 1)
            await asyncio.sleep(0.05)
            dropped = b.submit(["dropped"], 1)
            dropped[0].cancel()  # the caller timed out
            kept = b.submit(["kept"], 1)
            gate.set()
            await asyncio.gather(*busy, *kept)
            await b.drain()
        assert ["dropped"] not in fn.batches and ["kept"] in fn.batches
    asyncio.run(main())


def test_a_failing_batch_fails_its_callers_and_the_loop_goes_on():
    async def main():
        calls = []

        def fn(texts, ks):
            calls.append(texts)
            if "bad" in texts:
                raise ValueError("boom")
            return [{"text": t} for t in texts]

        with ThreadPoolExecutor(1) as ex:
            b = _batcher(fn, ex, max_batch_size=8, max_wait_s=0.2)
            good, bad, other = b.submit(["good"], 1), b.submit(["bad"], 1), b.submit(["other"], 1)
            assert (await asyncio.gather(*good))[0]["text"] == "good"
            assert (await asyncio.gather(*other))[0]["text"] == "other"
            with pytest.raises(ValueError):
                await asyncio.gather(*bad)
            assert calls[0] == ["good", "bad", "other"]  # one batch, then each alone
            assert (await asyncio.gather(*b.submit(["next"], 1)))[0]["text"] == "next"
            await b.drain()
    asyncio.run(main())


def test_drain_answers_everything_queued():
    async def main():
        fn = Recorder(delay=0.01)
        with ThreadPoolExecutor(1) as ex:
            b = _batcher(fn, ex, max_batch_size=3, max_wait_s=1.0)
            futures = b.submit([f"t{i}" for i in range(10)], 1)
            await b.drain()
            assert all(f.done() and not f.cancelled() for f in futures)
        assert sorted(t for batch in fn.batches for t in batch) == sorted(f"t{i}" for i in range(10))
    asyncio.run(main())


@pytest.mark.parametrize("lengths", [[5, 50, 6, 400, 7, 60, 8, 9], [3] * 10, [1, 1000], []])
def test_length_groups_cover_every_text_once_sorted_by_length(lengths):
    texts = ["x" * n for n in lengths]
    groups = length_groups(texts)
    assert sorted(i for g in groups for i in g) == list(range(len(texts)))
    for g in groups:
        assert [len(texts[i]) for i in g] == sorted(len(texts[i]) for i in g)
        if len(g) > 4:  # beyond the minimum group, no text is more than twice the shortest (or 128)
            assert len(texts[g[-1]]) <= 2 * max(128, len(texts[g[0]]))
    # short texts stay together: one model call costs more than padding them
    assert len(length_groups(["x" * n for n in range(1, 257)])) == 1
    assert len(length_groups(["x" * n for n in (10, 20, 30, 40, 300, 310, 320, 330)])) == 2
