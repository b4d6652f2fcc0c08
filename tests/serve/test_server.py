"""``attnkit serve`` as a real process: it starts, reports ready, answers over TCP, and on
SIGTERM finishes every request it accepted before exiting; bad command lines are one error."""
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fuzz.contract import invoke

CLI = [sys.executable, "-c", "from attnkit.cli import run; run()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], timeout: float = 90.0):
    """``attnkit serve ARGS --port P`` in a new process, returned once /health/ready is 200."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CLI, "serve", *args, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"not ready in {timeout} s: {proc.stdout.read()}")


def queue_depth(url: str) -> float:
    """The served model's queue depth, read from the server's /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
        if line.startswith('attnkit_queue_depth{model="run"}'):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_finishes_every_accepted_request(text_run):
    # requests wait up to 3 s in the batcher: SIGTERM arrives once all 12 are queued (the
    # server's own queue-depth gauge says so; a fixed sleep raced the slower connections)
    proc, url = start([str(text_run), "--max-wait-ms", "3000", "--max-batch-size", "64"])
    try:
        # Two requests first, so the batcher has seen traffic: the first request after a quiet
        # spell is answered at once, without waiting for company.
        for _ in range(2):
            assert httpx.post(f"{url}/v1/models/run/predict", json={"texts": ["warm"]}, timeout=30).status_code == 200
        with ThreadPoolExecutor(12) as ex:
            futures = [ex.submit(httpx.post, f"{url}/v1/models/run/predict",
                                 json={"texts": [f"a good film {i}"]}, timeout=30) for i in range(12)]
            deadline = time.time() + 2.5
            while queue_depth(url) < 12 and time.time() < deadline:
                time.sleep(0.05)
            assert queue_depth(url) == 12, "the 12 requests were not all queued in time"
            proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        assert [a.status_code for a in answers] == [200] * 12
        assert all(a.json()["predictions"][0]["text"] == f"a good film {i}" for i, a in enumerate(answers))
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit by that signal)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        log = proc.stdout.read()
        assert "Waiting for application shutdown" in log and "Finished server process" in log, log
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health/live", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.parametrize("argv, message", [
    (["serve", "/no/such/run"], "run directory /no/such/run not found"),
    (["serve", "RUN", "--router", "/no/table.yaml"], "config file not found"),
    (["serve", "RUN", "--port", "70000"], "--port must be in 0..65535"),
    (["serve", "a=RUN", "a=RUN"], "model name 'a' given twice"),
    (["serve", "RUN", "--api-key", "short"], "at least 8 characters"),
    (["serve", "b a d=RUN"], "model name 'b a d'"),
    (["serve", "RUN", "--max-queue", "4"], "--max-texts (64) must be <= --max-queue (4)"),
])
def test_bad_serve_command_lines_are_one_error(text_run, argv, message):
    r = invoke([a.replace("RUN", str(text_run)) for a in argv])
    assert r.code == 2, r
    assert message in r.err and "Traceback" not in r.err + r.out


def test_sighup_reloads_the_models_from_their_run_directories(text_run, transformer_run, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(text_run)
    proc, url = start([f"m={link}"])
    try:
        before = httpx.get(f"{url}/v1/models").json()["models"][0]
        link.unlink()
        link.symlink_to(transformer_run)  # point the name at a new run, then signal
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while time.time() < deadline:
            after = httpx.get(f"{url}/v1/models").json()["models"][0]
            if after["loaded_at"] != before["loaded_at"]:
                break
            time.sleep(0.1)
        assert after["loaded_at"] > before["loaded_at"]
        r = httpx.post(f"{url}/v1/models/m/predict", json={"texts": ["a good film"]})
        assert r.status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'attnkit_model_swaps_total{model="m"} 1.0' in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)
