"""The HTTP service: ``create_app(settings)`` builds the FastAPI application.

Endpoints: ``POST /v1/models/{name}/predict``, ``POST /v1/models/{name}/explain``,
``POST /v1/route`` (with a routing table), ``GET /v1/models``, ``PUT /v1/models/{name}``
(swap the run a name serves), ``GET /health/live``, ``GET /health/ready``, ``GET /metrics``,
the page at ``/`` and the OpenAPI schema (``/openapi.json``, ``/docs``). Every error is one
JSON body, :class:`~attnkit.serve.schemas.ErrorResponse`, naming the field when a request
was at fault."""
from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AttnkitError, first_line
from ..explain import explain
from .batcher import QueueFull
from .guard import Guard
from .metrics import Metrics
from .models import ModelPool, ServedModel
from .page import PAGE
from .router import Router, bind_router, read_table
from .schemas import (ErrorResponse, ExplainRequest, ExplainResponse, Health, ModelsResponse, PredictRequest,
                      PredictResponse, RouteRequest, RouteResponse, SwapRequest, error)
from .settings import ServeSettings

log = logging.getLogger("attnkit")
ERRORS = {k: {"model": ErrorResponse} for k in (401, 403, 404, 413, 422, 500, 503, 504)}


class ApiError(Exception):
    """An error answered as :class:`ErrorResponse` with ``status``."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.field, self.headers = status, kind, message, field, headers


def _field(loc) -> str:
    """``("body", "texts", 3)`` -> ``texts[3]``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def create_app(settings: ServeSettings) -> FastAPI:
    """The service for ``settings``: models load (and warm up) in the background after start;
    ``/health/ready`` answers 200 only once they all have."""
    threads = settings.compute_threads()
    metrics = Metrics()
    executor = ThreadPoolExecutor(1, thread_name_prefix="attnkit-compute", initializer=torch.set_num_threads,
                                  initargs=(threads,))
    pool = ModelPool(settings, executor, metrics)
    state: dict = {"status": "loading", "detail": "loading models", "router": None, "tasks": set()}
    explaining = asyncio.Semaphore(settings.max_explain)  # explanations waiting or running, at most

    async def load() -> None:
        try:
            await pool.load_all()
            if settings.router:
                state["router"] = make_router(pool.models)
            state["status"], state["detail"] = "ready", f"{len(pool.models)} model(s) loaded and warmed up"
        except AttnkitError as e:
            state["status"], state["detail"] = "failed", str(e)
            log.error(f"serve: {e}")
        except Exception as e:  # noqa: BLE001  (reported on /health/ready instead of a dead task)
            state["status"], state["detail"] = "failed", f"{type(e).__name__}: {first_line(e)}"
            log.exception("serve: loading failed")

    def bind_new(served: ServedModel) -> None:
        """A swapped-in model's router, bound before the swap commits (a bad run changes nothing)."""
        if settings.router and (read_table(settings.router).model or pool.default) == served.name:
            state["router"] = make_router({**pool.models, served.name: served})

    def make_router(models: dict[str, ServedModel]) -> Router:
        table = read_table(settings.router)
        name = table.model or pool.default
        if name not in models:
            raise AttnkitError(f"{settings.router}.model: {name!r} is not served (served: {', '.join(models)})")
        served = models[name]
        return bind_router(table, served.run_dir, list(served.run.meta.get("labels") or []),
                           getattr(served.run.cfg.data, "out_of_scope", None), str(settings.router))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(threads)
        loader = asyncio.create_task(load())
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: state["tasks"].add(loop.create_task(reload())))
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):  # not the main thread (tests)
            pass
        yield
        state["status"], state["detail"] = "stopping", "shutting down"
        if not loader.done():
            loader.cancel()
        await pool.close()
        executor.shutdown(wait=True)

    async def reload() -> None:
        try:
            await pool.reload(bind_new)
        except Exception as e:  # noqa: BLE001  (a signal handler has no caller to tell)
            log.error(f"serve: reload failed, the old models keep serving: {first_line(e)}")
        finally:
            state["tasks"] = {t for t in state["tasks"] if not t.done()}

    app = FastAPI(title="attnkit", summary="Predictions, explanations and routing from attnkit runs",
                  lifespan=lifespan, responses=ERRORS)
    app.state.pool, app.state.metrics, app.state.settings, app.state.serve_state = pool, metrics, settings, state
    app.add_middleware(Guard, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       known_models=lambda: pool.models)

    # ---------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(error(e.kind, e.message, e.field), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": ("body",), "msg": "invalid request"}
        where = _field(first.get("loc", ()))
        return JSONResponse(error("invalid_request", f"{where}: {first.get('msg', 'invalid')}", where), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        kind, field = ("body_too_large", "body") if e.status_code == 413 else ("http", None)
        return JSONResponse(error(kind, str(e.detail), field), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    def internal(e: Exception) -> ApiError:
        log.error(f"serve: {type(e).__name__}: {first_line(e)}")
        return ApiError(500, "internal", f"the server failed on this request ({type(e).__name__}); it is logged")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):  # the last resort (Starlette logs it too)
        e = internal(e)
        return JSONResponse(error(e.kind, e.message), status_code=500)

    # ---------------------------------------------------------------- helpers
    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})

    def served(name: str) -> ServedModel:
        if state["status"] != "ready":
            raise ApiError(503, "not_ready", f"the service is {state['status']}: {state['detail']}",
                           headers={"Retry-After": "1"})
        model = pool.models.get(name)
        if model is None:
            raise ApiError(404, "unknown_model", f"no model named {name!r}; served: {', '.join(pool.models)}", "name")
        return model

    def check_texts(texts: list[str], limit: int) -> None:
        if len(texts) > limit:
            raise ApiError(413, "too_many_texts", f"texts: {len(texts)} texts, at most {limit} per request", "texts")
        for i, text in enumerate(texts):
            if len(text) > settings.max_chars:
                raise ApiError(422, "text_too_long", f"texts[{i}]: {len(text)} characters, at most "
                                                     f"{settings.max_chars}", f"texts[{i}]")

    async def run_batched(model: ServedModel, texts: list[str], top_k: int) -> list[dict]:
        try:
            futures = model.batcher.submit(texts, top_k)
        except QueueFull as e:
            raise ApiError(503, "overloaded", "the model's queue is full; retry later",
                           headers={"Retry-After": str(int(e.retry_after + 0.999))}) from None
        try:
            return await asyncio.wait_for(asyncio.gather(*futures), settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s:g} s") from None
        except AttnkitError as e:
            raise ApiError(422, "bad_input", str(e)) from None
        except Exception as e:  # noqa: BLE001  (the model failed: one JSON 500, logged; the service goes on)
            raise internal(e) from None

    # ---------------------------------------------------------------- endpoints
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/health/live", response_model=Health, tags=["health"])
    async def live():
        """The process answers (always 200 while it runs)."""
        return {"status": "live", "detail": state["detail"]}

    @app.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def ready():
        """200 once every model is loaded and warmed up; 503 before, after a failed load and while stopping."""
        body = {"status": state["status"], "detail": state["detail"]}
        return body if state["status"] == "ready" else JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_key)])
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", response_model=ModelsResponse, dependencies=[Depends(require_key)], tags=["models"])
    async def list_models():
        """The served models."""
        return {"default": pool.default, "models": [m.describe() for m in pool.models.values()]}

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse, dependencies=[Depends(require_key)],
              tags=["models"])
    async def predict(name: str, body: PredictRequest):
        """Predictions for a list of texts (micro-batched with other requests)."""
        model = served(name)
        check_texts(body.texts, settings.max_texts)
        # the records are plain JSON data already: answered directly, not re-validated against
        # the response model (which still documents them in the schema)
        return JSONResponse({"model": name, "predictions": await run_batched(model, body.texts, body.top_k)})

    @app.post("/v1/models/{name}/explain", response_model=ExplainResponse, dependencies=[Depends(require_key)],
              tags=["models"])
    async def explain_texts(name: str, body: ExplainRequest):
        """Per-word explanation of each text's prediction (attention or saliency)."""
        model = served(name)
        check_texts(body.texts, settings.max_explain)
        if explaining.locked():
            raise ApiError(503, "overloaded", f"{settings.max_explain} explanations are already waiting; retry later",
                           headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        try:
            async with explaining:
                found = await asyncio.wait_for(loop.run_in_executor(
                    executor, lambda: explain(model.explain_run, body.texts, body.method, target=body.target)),
                    settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s:g} s") from None
        except AttnkitError as e:
            raise ApiError(422, "bad_input", str(e), "target" if body.target is not None else None) from None
        except Exception as e:  # noqa: BLE001
            raise internal(e) from None
        out = []
        for text, e in zip(body.texts, found):
            d = e.to_dict()
            out.append({"text": text, **{k: d[k] for k in ("method", "tokens", "scores", "label", "probability",
                                                            "target")}})
        return {"model": name, "explanations": out}

    @app.post("/v1/route", response_model=RouteResponse, dependencies=[Depends(require_key)], tags=["router"])
    async def route(body: RouteRequest, request: Request):
        """Intent, confidence and route of each customer query; out-of-scope or unsure ones go to a person."""
        router: Router | None = state["router"]
        if router is None and state["status"] == "ready":
            raise ApiError(404, "no_router", "this service has no routing table (start it with --router TABLE.yaml)")
        name = (router.table.model if router else None) or pool.default
        request.scope["attnkit_model"] = name  # the metrics' model label (the path names none)
        model = served(name)
        check_texts(body.texts, settings.max_texts)
        # every label's probability: the router's confidence score may need more than the top one
        records = await run_batched(model, body.texts, len(model.run.meta.get("labels") or []) or 1)
        return JSONResponse({"model": name, "routes": [state["router"].route(r) for r in records]})

    @app.put("/v1/models/{name}", response_model=ModelsResponse, dependencies=[Depends(require_key)],
             tags=["admin"])
    async def swap(name: str, body: SwapRequest):
        """Serve ``name`` from another run directory, without dropping a request."""
        if not settings.allow_swap:
            raise ApiError(403, "forbidden", "model swaps are off (--no-swap)")
        if settings.api_key is None:
            raise ApiError(403, "forbidden", "model swaps need an API key: start the service with --api-key (or "
                                             "reload every model from its run directory with SIGHUP)")
        served(name)
        try:
            await pool.swap(name, Path(body.run), bind_new)
        except AttnkitError as e:
            raise ApiError(422, "bad_run", f"run: {e}", "run") from None
        return {"default": pool.default, "models": [m.describe() for m in pool.models.values()]}

    return app
