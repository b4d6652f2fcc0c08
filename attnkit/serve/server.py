"""Running the service: ``serve(settings, host, port)`` under uvicorn, in one process or
``workers`` processes (each with its own batcher and compute thread; uvicorn shares the
socket). SIGTERM stops accepting connections, lets every accepted request finish, then
answers what is still queued and exits; SIGHUP reloads the models from their run
directories."""
from __future__ import annotations

import logging
import os

from ..errors import ConfigError
from .settings import ENV, ServeSettings

log = logging.getLogger("attnkit")


def app_from_env():
    """The application of a worker process (``--workers N``), from the settings in its environment."""
    from .app import create_app

    return create_app(ServeSettings.from_env())


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve needs fastapi and uvicorn: pip install 'attnkit[serve]'") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"serve: --port must be in 0..65535, got {port}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(f"serve: listening on {host}, reachable from other machines"
                    + ("" if settings.api_key else "; no API key is set (--api-key or $ATTNKIT_API_KEY)"))
    common = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=settings.timeout_s + 5)
    if settings.workers == 1:
        from .app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        os.environ[ENV] = settings.to_env()
        uvicorn.run("attnkit.serve.server:app_from_env", factory=True, workers=settings.workers, **common)
