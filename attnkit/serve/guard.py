"""The ASGI middleware in front of every request: the body-size cap (413 before the body is
read when ``Content-Length`` says so, or as soon as a streamed body passes the cap) and the
request metrics (endpoint, model, status, latency)."""
from __future__ import annotations

import json
import time

from fastapi import HTTPException

from .metrics import Metrics


class BodyTooLarge(HTTPException):
    """A streamed request body passed the cap (an HTTP 413, so FastAPI's body reader passes it on)."""

    def __init__(self, cap: int):
        super().__init__(413, f"request body: more than {cap} bytes")


class Guard:
    """Pure ASGI (no per-request task, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int, known_models=lambda: ()):
        self.app, self.metrics, self.cap, self.known_models = app, metrics, max_body_bytes, known_models

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.cap):
                await self._too_large(send_wrapper)
                return
            seen = 0

            async def receive_capped():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.cap:
                        raise BodyTooLarge(self.cap)
                return message

            try:
                await self.app(scope, receive_capped, send_wrapper)
            except BodyTooLarge:
                if not status["started"]:
                    await self._too_large(send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            model = (scope.get("path_params") or {}).get("name") or scope.get("attnkit_model", "")
            if model and model not in self.known_models():  # no label per made-up name: bounded metrics
                model = "unknown"
            if endpoint not in ("/metrics", "/health/live", "/health/ready"):
                self.metrics.observe(endpoint, model, status["code"], time.perf_counter() - t0)

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": {"type": "body_too_large", "message": f"request body: more than {self.cap} bytes",
                                     "field": "body"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
