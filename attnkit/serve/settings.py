"""What ``attnkit serve`` is told: the models, the batching, the limits and the security
settings, validated once (each bad value is one :class:`~attnkit.errors.ConfigError` naming
the option)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError

ENV = "ATTNKIT_SERVE_SETTINGS"  # how ``--workers N`` hands the settings to each worker process


@dataclass
class ServeSettings:
    """Settings of one service. ``models``: name -> run directory (the first is the default);
    ``max_batch_size``/``max_wait_ms``: a micro-batch runs when it holds this many texts or its
    oldest text waited this long (``batching=False``: every request runs alone); ``max_queue``:
    texts waiting at most (more: 503 with ``Retry-After``); ``max_texts``/``max_chars``: per
    request / per text (413 / 422); ``max_body_bytes``: request body cap (413);
    ``timeout_s``: a request still unanswered after this gets 504; ``api_key``: bearer token
    required on everything but the health endpoints and the page; ``router``: a routing table
    (YAML) for ``POST /v1/route``; ``threads``: torch threads of the compute thread (0: the
    cores divided by the workers)."""

    models: dict[str, str]
    engine: str | None = None
    precision: str = "fp32"
    batching: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_texts: int = 64
    max_chars: int = 2000
    max_explain: int = 4
    max_body_bytes: int = 1 << 20
    timeout_s: float = 30.0
    api_key: str | None = None
    router: str | None = None
    workers: int = 1
    threads: int = 0
    allow_swap: bool = True  # PUT /v1/models/NAME (it also needs an API key)
    warmup_texts: list[str] = field(default_factory=lambda: ["warm up"])

    def __post_init__(self):
        if not self.models:
            raise ConfigError("serve: give at least one run directory")
        for name in self.models:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ConfigError(f"serve: model name {name!r}: use letters, digits, '-', '_' and '.'")
        for key in ("max_batch_size", "max_queue", "max_texts", "max_chars", "max_explain", "max_body_bytes",
                    "workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"serve: --{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        for key in ("max_wait_ms", "timeout_s", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"serve: --{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")
        if self.max_texts > self.max_queue:
            raise ConfigError(f"serve: --max-texts ({self.max_texts}) must be <= --max-queue ({self.max_queue}): a full "
                              f"request would never fit in the queue")
        if self.timeout_s == 0:
            raise ConfigError("serve: --timeout-s must be > 0")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("serve: the API key must be at least 8 characters")

    @property
    def batch_size(self) -> int:
        """The micro-batch size in effect (1 with batching off)."""
        return self.max_batch_size if self.batching else 1

    @property
    def wait_s(self) -> float:
        """The longest wait for a micro-batch to fill, in seconds (0 with batching off)."""
        return self.max_wait_ms / 1000 if self.batching else 0.0

    def compute_threads(self) -> int:
        """Torch threads for this process's compute thread."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def to_env(self) -> str:
        """The settings as JSON, for the worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ServeSettings":
        """The settings a worker process was started with."""
        raw = os.environ.get(ENV)
        if not raw:
            raise ConfigError(f"serve: the worker has no settings (${ENV} is not set); start it with `attnkit serve`")
        return cls(**json.loads(raw))
