"""A service on the session's trained runs, through Starlette's TestClient (lifespan run:
models load and warm up as in production)."""
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'attnkit[serve]')")
pytest.importorskip("httpx", reason="httpx (Starlette's TestClient) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from attnkit.serve import ServeSettings, create_app  # noqa: E402


def wait_ready(client, timeout: float = 60.0) -> dict:
    """Poll /health/ready until 200 (or fail with its last answer)."""
    deadline = time.time() + timeout
    while True:
        r = client.get("/health/ready")
        if r.status_code == 200 or time.time() > deadline:
            assert r.status_code == 200, r.json()
            return r.json()
        time.sleep(0.02)


def make_client(**settings) -> TestClient:
    """A TestClient (use it as a context manager) on ``ServeSettings(**settings)``."""
    return TestClient(create_app(ServeSettings(**settings)))


@pytest.fixture()
def client(text_run):
    with make_client(models={"sentiment": str(text_run)}, max_texts=8, max_chars=200, max_body_bytes=4096) as c:
        wait_ready(c)
        yield c
