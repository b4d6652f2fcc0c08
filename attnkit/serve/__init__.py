"""The HTTP service (``attnkit serve``): FastAPI + uvicorn, dynamic micro-batching, health,
Prometheus metrics, API key, model swaps, and the customer-service router.

    from attnkit.serve import ServeSettings, create_app
    app = create_app(ServeSettings(models={"sentiment": "runs/sst2"}))

Needs the ``serve`` extra (``pip install 'attnkit[serve]'``)."""
from .settings import ServeSettings


def create_app(settings: ServeSettings):
    """The FastAPI application (see :mod:`attnkit.serve.app`)."""
    from .app import create_app as _create

    return _create(settings)


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the service under uvicorn (see :mod:`attnkit.serve.server`)."""
    from .server import serve as _serve

    _serve(settings, host, port, log_level)


__all__ = ["ServeSettings", "create_app", "serve"]
