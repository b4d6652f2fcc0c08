"""The models a service holds: each a loaded run with its own micro-batcher, loaded and
warmed up before it is reported ready, and replaceable while requests keep coming."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..deploy import attach_engine, engine_name
from ..errors import ConfigError
from ..rundir import LoadedRun, load_run
from ..run.prediction import predict
from ..tasks import predict_encoded
from ..train.precision import PrecisionChoice, inference_precision, model_work
from .batcher import MicroBatcher
from .metrics import Metrics
from .settings import ServeSettings

log = logging.getLogger("attnkit")
# a micro-batch is split where a text is this many times longer than the shortest one of its
# group (sorted by length), so short texts are not padded to a long one's length; texts up to
# SHORT characters count as SHORT long: one more model call costs more than padding them
# (measured at 32 clients: the SST-2 BiLSTM served 651 instead of 506 req/s without splitting
# sentences, MiniLM on CLINC150 queries 277 instead of 260)
LENGTH_RATIO = 2.0
SHORT = 128
MIN_GROUP = 4


def length_groups(texts: list[str], ratio: float = LENGTH_RATIO, min_group: int = MIN_GROUP,
                  short: int = SHORT) -> list[list[int]]:
    """Indices of ``texts`` in groups of similar length (each sorted by length): a group ends
    where the next text is more than ``ratio`` times its shortest, counting texts shorter
    than ``short`` characters as ``short`` long (and once it has ``min_group``)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) < min_group
                       or len(texts[i]) <= ratio * max(short, len(texts[groups[-1][0]]))):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@dataclass
class ServedModel:
    """One name's run: where it came from, the loaded run, the precision it runs in (chosen once,
    at load), its batcher, when it was loaded."""

    name: str
    run_dir: Path
    run: LoadedRun
    precision: PrecisionChoice = PrecisionChoice("fp32", "asked for")
    batcher: MicroBatcher | None = None
    loaded_at: float = field(default_factory=time.time)

    def predict_texts(self, texts: list[str], top_ks: list[int]) -> list[dict]:
        """Records for ``texts`` in order, run in groups of similar length."""
        out: list[dict | None] = [None] * len(texts)
        for group in length_groups(texts):
            records = predict(self.run, [texts[i] for i in group], top_k=[top_ks[i] for i in group],
                              batch_size=len(group), precision=self.precision)
            for i, record in zip(group, records):
                out[i] = record
        return out

    @property
    def explain_run(self) -> LoadedRun:
        """The run explanations use: always the PyTorch model (gradients, attention maps), also
        when predictions run on ONNX Runtime."""
        inner = getattr(self.run.model, "torch_model", None)
        return self.run if inner is None else replace(self.run, model=inner)

    def describe(self) -> dict:
        """``GET /v1/models`` entry."""
        meta = self.run.meta
        return {"name": self.name, "run": str(self.run_dir), "task": self.run.task.name, "inputs": self.run.task.inputs,
                "labels": list(meta.get("labels") or []) if self.run.task.categorical else [],
                "engine": engine_name(self.run), "loaded_at": self.loaded_at}


def load_served(name: str, run_dir: str | Path, settings: ServeSettings) -> ServedModel:
    """A run loaded for serving and warmed up (one prediction through the whole path), so the
    first real request does not pay for lazy initialisation."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"serve: model {name!r}: run directory {path} not found")
    run = attach_engine(load_run(path), settings.engine)
    if run.task.inputs != "text":
        raise ConfigError(f"serve: model {name!r}: {path} is a {run.task.name} run; the service takes text models")
    texts = settings.warmup_texts * 2
    # `auto` times a full micro-batch of the warm-up texts (a batch of two would not show bf16's gain)
    full = (settings.warmup_texts * settings.batch_size)[:settings.batch_size]
    encoded = run.task.encode_inputs(run.featurized, full)
    work = model_work(run.model, lambda: predict_encoded(run.model, run.task, encoded, len(encoded)),
                      f"serve batch {len(encoded)}") if encoded else None
    precision = inference_precision(settings.precision, "serve --precision", engine_name(run), work)
    served = ServedModel(name, path, run, precision)
    t0 = time.perf_counter()
    served.predict_texts(texts, [1] * len(texts))
    log.info(f"serve: {name} <- {path} ({run.task.name}, engine {engine_name(run)}), warmed up in "
             f"{time.perf_counter() - t0:.2f} s")
    return served


class ModelPool:
    """Name -> :class:`ServedModel`; every model's batcher runs on ``executor`` (one compute
    thread per process)."""

    def __init__(self, settings: ServeSettings, executor: Executor, metrics: Metrics):
        self.settings, self.executor, self.metrics = settings, executor, metrics
        self.models: dict[str, ServedModel] = {}
        self.default: str = next(iter(settings.models))

    def _attach(self, served: ServedModel) -> ServedModel:
        s, name = self.settings, served.name
        served.batcher = MicroBatcher(
            lambda texts, ks: served.predict_texts(texts, ks), self.executor, s.batch_size,
            s.wait_s, s.max_queue, on_batch=self.metrics.batch_size.labels(name).observe,
            on_depth=self.metrics.queue_depth.labels(name).set)
        served.batcher.start()
        return served

    async def load_all(self) -> None:
        """Load and warm up every configured model (off the event loop)."""
        for name, run_dir in self.settings.models.items():
            served = await asyncio.get_running_loop().run_in_executor(
                self.executor, load_served, name, run_dir, self.settings)
            self.models[name] = self._attach(served)

    async def swap(self, name: str, run_dir: str | Path, check=None) -> ServedModel:
        """Point ``name`` at another run: the new one is loaded and warmed up on the compute
        thread (requests queue meanwhile, the old model answers them after) and checked by
        ``check(served)`` (which may raise); then new requests go to the new one and the old one
        finishes what it has queued. No request fails across the swap."""
        served = await asyncio.get_running_loop().run_in_executor(
            self.executor, load_served, name, run_dir, self.settings)
        if check is not None:
            check(served)
        old = self.models.get(name)
        self.models[name] = self._attach(served)
        if old is not None and old.batcher is not None:
            await old.batcher.drain()
        self.metrics.swaps.labels(name).inc()
        log.info(f"serve: {name} swapped to {run_dir}")
        return served

    async def reload(self, check=None) -> None:
        """Load every model again from its run directory (``SIGHUP``: a symlink moved to a new run)."""
        for name, served in list(self.models.items()):
            await self.swap(name, served.run_dir, check)

    async def close(self) -> None:
        """Answer everything queued, then stop the batchers."""
        await asyncio.gather(*(m.batcher.drain() for m in self.models.values() if m.batcher is not None))
