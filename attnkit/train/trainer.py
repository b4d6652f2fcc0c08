"""The training loop: batches -> forward -> loss -> backward -> (clip, step, schedule), with
dev evaluation, keep-best, early stopping, NaN guard, metrics.jsonl + TensorBoard, and
checkpoints that make a killed-and-resumed run end exactly where an uninterrupted one does.

Why resume is exact: the batch order of epoch ``e`` is a pure function of ``(seed, e)``,
and a checkpoint stores the position inside the epoch plus every RNG state (dropout), so a
resumed run replays the same batches with the same random draws."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.batching import length_bucketed_batches, token_budget_batches
from ..errors import AttnkitError
from ..run_files import RunFiles
from .adversarial import Adversary
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .distributed import all_sum, any_rank, gather_objects, no_sync, shard, world, wrap
from .optim import build_optimizer, build_schedule, clip_grad_norm
from .precision import WorkProbe, batch_size_text, choose_precision, model_work

log = logging.getLogger("attnkit")


class TrainingDiverged(AttnkitError):
    """The loss became NaN or infinite."""


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard event files (when tensorboard is installed)."""

    def __init__(self, run_dir: Path):
        self.files = RunFiles(run_dir)
        self.path = self.files.metrics  # metrics.jsonl
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.files.events))
        except ImportError:  # optional: the jsonl log is the record
            pass

    def write(self, record: dict, step: int) -> None:
        """Log one record (numbers also go to TensorBoard as ``kind/name``)."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            kind = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)
            self.tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.path.exists():
            return
        keep = [r for r in self.files.read_metrics() if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")


def _duration(seconds: float) -> str:
    """A time span for a log line: ``45 s``, ``2 min 10 s``, ``1 h 05 min`` (rounded to the
    second under an hour, to the minute from an hour on)."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


def _better(a: float, b: float | None, minimize: bool) -> bool:
    return b is None or (a < b if minimize else a > b)


class _NoLog:
    """The metrics log of a rank other than 0: rank 0 writes it."""

    def write(self, record: dict, step: int) -> None:
        """Nothing (rank 0 logs)."""

    def truncate_after(self, step: int) -> None:
        """Nothing (rank 0 logs)."""


class Trainer:
    """Trains ``model`` (a :class:`attnkit.models.TaskModel`) on ``train_data`` (``lengths``
    and ``collate(indices)``), evaluating ``evaluate(model, dev_data) -> metrics`` after every
    epoch. Writes ``checkpoints/last.pt``, ``checkpoints/best.pt`` and ``metrics.jsonl`` into
    ``run_dir``."""

    def __init__(self, model: torch.nn.Module, train_data, dev_data, cfg: TrainConfig, run_dir: str | Path,
                 evaluate: Callable[[torch.nn.Module, object], dict], progress: bool | None = None,
                 on_checkpoint: Callable[[], None] | None = None, on_step: Callable[[dict], bool] | None = None,
                 minimize: bool | None = None, loss: Callable[[dict, dict], torch.Tensor] | None = None,
                 on_epoch: Callable[[int, dict], None] | None = None):
        self.model, self.train_data, self.dev_data, self.cfg = model, train_data, dev_data, cfg
        self.loss = loss or model.loss  # (out, batch) -> loss; distillation mixes in its teacher
        self.world = world()  # rank and size of a data-parallel run (rank 0 of 1 otherwise)
        self.metric = cfg.metric or "accuracy"  # a run config fills in its task's default
        # whether a lower dev metric is better (the task says; by default only for losses)
        self.minimize = self.metric.endswith("loss") if minimize is None else minimize
        self.run_dir = Path(run_dir)
        # chosen before DDP wraps the model: `auto` times a training step of the bare model, on rank 0
        # alone (ranks probing at once would measure each other), whose choice every rank takes
        choice = choose_precision(cfg.effective_precision, "train.precision", self._work_probe()) \
            if self.world.main else None
        self.precision = gather_objects(choice, self.world)[0]
        if cfg.effective_precision != "fp32":
            log.info(f"training in {self.precision}")
        # train.adversarial: FGM / PGD on the embeddings (before DDP, which must see the dense embedding path)
        self.adversary = Adversary(cfg.adversarial, model) if cfg.adversarial.on else None
        self.ddp = wrap(model, self.world, self._probe_loss)  # what training forwards through (the model on one rank)
        self.on_epoch = on_epoch  # (epoch, dev metrics) after each epoch; may raise to stop (tune's pruning)
        self.files = RunFiles(self.run_dir)
        self.evaluate = evaluate
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.world.main
        self.on_checkpoint = on_checkpoint
        self.on_step = on_step  # called after every optimiser step with the state; True = pause (checkpointed)
        self.paused = False
        batches = (len(self._batches(0)) if cfg.max_tokens or hasattr(train_data, "epoch_batches")
                   else math.ceil(len(train_data) / (cfg.batch_size * self.world.size)))
        self.steps_per_epoch = math.ceil(batches / cfg.accumulate)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.opt = build_optimizer(model, cfg.optimizer)
        self.sched = build_schedule(self.opt, self.total_steps, cfg.schedule)
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": None, "bad_epochs": 0,
                      "history": [], "loss_sum": 0.0, "seen": 0, "ranks": self.world.size}

    def _work_probe(self) -> WorkProbe | None:
        """The first training batch, forward and backward, for ``precision: auto`` to time."""
        if self.cfg.effective_precision != "auto":
            return None
        idx = self._share(self._batches(0)[0])[0]
        batch = self.train_data.collate(idx)
        return model_work(self.model, lambda: self.model(batch), f"train batch {batch_size_text(batch)}",
                          loss=lambda out: self.loss(out, batch))

    def _probe_loss(self) -> torch.Tensor:
        """The loss of the first training example (DDP's check for parameters without gradients)."""
        batch = self.train_data.collate([0])
        return self.loss(self.model(batch), batch)

    # ------------------------------------------------------------------ checkpoints
    def model_state(self) -> dict:
        """What a checkpoint keeps of the model: everything, or only the parameters that train
        for models that say so (``trained_state``: a LoRA run does not copy its frozen backbone)."""
        return getattr(self.model, "trained_state", self.model.state_dict)()

    def load_model_state(self, state: dict) -> None:
        """Inverse of :meth:`model_state`."""
        getattr(self.model, "load_trained_state", self.model.load_state_dict)(state)

    def _snapshot(self) -> dict:
        rng = gather_objects(rng_state(), self.world)  # every rank's: a resumed rank draws what it would have
        trainer = dict(self.state)
        if self.world.distributed:  # the epoch's loss so far over every rank (rank 0 resumes with it, the others 0)
            trainer["loss_sum"], trainer["seen"] = all_sum([self.state["loss_sum"], self.state["seen"]], self.world)
            trainer["seen"] = int(trainer["seen"])
        return {"model": self.model_state(), "optimizer": self.opt.state_dict(),
                "schedule": self.sched.state_dict(), "trainer": trainer,
                "rng": rng[0] if len(rng) == 1 else rng}

    def save(self) -> None:
        """Atomically checkpoint the whole training state (every rank takes part; rank 0 writes)."""
        snapshot = self._snapshot()
        if not self.world.main:
            return
        save_checkpoint(self.files.last_checkpoint, snapshot)
        if self.on_checkpoint is not None:
            self.on_checkpoint()

    def resume(self) -> None:
        """Continue from ``checkpoints/last.pt``."""
        ck = load_checkpoint(self.files.last_checkpoint)
        ranks = ck["trainer"].get("ranks", 1)
        if ranks != self.world.size:  # the batch list, the step count and the random draws depend on it
            raise AttnkitError(f"{self.files.last_checkpoint}: this run trained on {ranks} rank(s) and can resume "
                               f"only on as many (--nproc {ranks}); this is {self.world.size}")
        self.load_model_state(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["schedule"])
        self.state = ck["trainer"]
        if not self.world.main:  # rank 0 carries the epoch's loss so far (summed over the ranks)
            self.state["loss_sum"], self.state["seen"] = 0.0, 0
        rng = ck["rng"]
        set_rng_state(rng[self.world.rank] if isinstance(rng, list) else rng)  # a data-parallel run keeps one per rank

    # ------------------------------------------------------------------ loop
    def _batches(self, epoch: int) -> list[list[int]]:
        # data without lengths (images) batch as a plain seeded shuffle
        # several ranks: global batches of world x the batch size, each rank trains on its share
        n = self.world.size
        plan = getattr(self.train_data, "epoch_batches", None)  # data with its own plan (multi-task: one task a batch)
        if plan is not None:
            return plan(epoch, self.cfg.batch_size * n, self.cfg.seed, self.cfg.bucket_factor)
        lengths = getattr(self.train_data, "lengths", None) or [1] * len(self.train_data)
        if self.cfg.max_tokens:
            return token_budget_batches(lengths, self.cfg.max_tokens * n, shuffle=True, seed=self.cfg.seed,
                                        epoch=epoch, bucket_factor=self.cfg.bucket_factor)
        return length_bucketed_batches(lengths, self.cfg.batch_size * n, shuffle=True,
                                       seed=self.cfg.seed, epoch=epoch, bucket_factor=self.cfg.bucket_factor)

    def _autocast(self):
        return self.precision.autocast()

    def _check_finite(self, loss: torch.Tensor) -> None:
        if any_rank(not bool(torch.isfinite(loss)), self.world):  # every rank stops together
            last = self.files.last_checkpoint
            kept = f"; the last good checkpoint is {last}" if last.exists() else ""
            value = loss.item() if not torch.isfinite(loss) else "not finite on another rank"
            raise TrainingDiverged(f"epoch {self.state['epoch'] + 1}, step {self.state['step'] + 1}: loss is "
                                   f"{value}; training stopped{kept} (lower the learning rate or enable "
                                   f"grad_clip)")

    def fit(self, resume: bool = False, log: MetricsLog | None = None) -> dict:
        """Train to the end (or early stop / max_steps); returns the best dev metrics."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
        elif self.cfg.seed is not None:
            torch.manual_seed(self.cfg.seed + self.world.rank)  # each rank its own dropout draws
        log = log or (MetricsLog(self.run_dir) if self.world.main else _NoLog())
        log.truncate_after(self.state["step"])
        cfg, st = self.cfg, self.state
        self.paused = False
        while st["epoch"] < cfg.epochs and not self._done():
            self._train_epoch(log)
            if self.paused:  # resume() continues from the step after the pause
                return {}
            self._end_epoch(log)  # also after a max_steps stop inside an epoch
            if self.on_epoch is not None and st["history"]:
                self.on_epoch(len(st["history"]), st["history"][-1].get("dev") or {})
            if cfg.patience and st["bad_epochs"] >= cfg.patience:
                self._print(f"early stopping: no {self.metric} improvement in {cfg.patience} epochs")
                break
        return st["history"][st["best_epoch"]]["dev"] if st["best_epoch"] is not None else {}

    def _done(self) -> bool:
        return bool(self.cfg.max_steps) and self.state["step"] >= self.cfg.max_steps

    def _train_epoch(self, log: MetricsLog) -> None:
        cfg, st = self.cfg, self.state
        batches = self._batches(st["epoch"])
        self.model.train()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), initial=st["batch"], desc=f"epoch {st['epoch'] + 1}/{cfg.epochs}",
                       leave=False, dynamic_ncols=True)
        t0, seen_before, batch_before = time.perf_counter(), st["seen"], st["batch"]
        last_line = t0  # when the last progress line was written (no bar only)
        self.opt.zero_grad(set_to_none=True)
        while st["batch"] < len(batches):
            idx, weight = self._share(batches[st["batch"]])
            batch = self.train_data.collate(idx)
            sync = (st["batch"] + 1) % cfg.accumulate == 0 or st["batch"] + 1 == len(batches)
            with no_sync(self.ddp, sync), self.precision.frozen_weights(self.model):
                with self._autocast(), self.adversary.probe() if self.adversary else contextlib.nullcontext():
                    out = self.ddp(batch)
                    loss = self.loss(out, batch)
                self._check_finite(loss)
                (loss * (weight / cfg.accumulate)).backward()
                if self.adversary is not None:  # the loss at the embeddings moved against it, added
                    with self._autocast():
                        adv = self.adversary.loss(self.model, self.ddp, self.loss, batch)
                    (adv * (cfg.adversarial.weight * weight / cfg.accumulate)).backward()
            idx = idx if weight else []  # a rank without a share counts nothing
            st["batch"] += 1
            st["loss_sum"] += loss.item() * len(idx)  # in the state: a resumed epoch reports the same mean
            st["seen"] += len(idx)
            if st["batch"] % cfg.accumulate == 0 or st["batch"] == len(batches):
                if cfg.grad_clip:
                    clip_grad_norm(self.model.parameters(), cfg.grad_clip)
                self.opt.step()
                self.sched.step()
                self.opt.zero_grad(set_to_none=True)
                st["step"] += 1
                if cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0:
                    log.write({"kind": "train", "epoch": st["epoch"] + 1, "step": st["step"],
                               "loss": st["loss_sum"] / max(st["seen"], 1), "lr": self.sched.get_last_lr()[0]}, st["step"])
                    self.save()
                if self.on_step is not None and self.on_step(st) and not self._done():
                    self.paused = True
                    self.save()
                    break
                if self._done():
                    break
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{st['loss_sum'] / max(st['seen'], 1):.4f}")
            elif cfg.log_every > 0 and (now := time.perf_counter()) - last_line >= cfg.log_every:
                last_line = now
                self._progress_line(len(batches), now - t0, st["batch"] - batch_before, st["seen"] - seen_before)
        if bar is not None:
            bar.close()
        loss_sum, seen, new = st["loss_sum"], st["seen"], st["seen"] - seen_before
        if self.world.distributed:  # the epoch's figures over every rank's share
            loss_sum, seen, new = all_sum([loss_sum, seen, new], self.world)
        self._epoch_train = {"loss": loss_sum / max(seen, 1), "samples_per_s": new / (time.perf_counter() - t0)}

    def _share(self, indices: list[int]) -> tuple[list[int], float]:
        """This rank's examples of a global batch and the weight of their mean loss (their share
        of the batch x ranks: DDP's gradient mean is then the global batch's mean)."""
        if not self.world.distributed:
            return indices, 1.0
        mine = shard(indices, self.world)
        if not mine:  # fewer examples than ranks: run one with weight 0 (every rank must take part)
            return indices[:1], 0.0
        return mine, len(mine) * self.world.size / len(indices)

    def _progress_line(self, total: int, elapsed: float, batches_done: int, samples_done: int) -> None:
        """One log line on the epoch so far (output without a progress bar). The rates count
        only what this call trained (a resumed epoch does not count the batches before it)."""
        st = self.state
        left = (total - st["batch"]) * elapsed / max(batches_done, 1)
        self._print(f"epoch {st['epoch'] + 1}/{self.cfg.epochs}: batch {st['batch']}/{total} "
                    f"({100 * st['batch'] // total}%), {samples_done / max(elapsed, 1e-9):.0f} samples/s, "
                    f"loss {st['loss_sum'] / max(st['seen'], 1):.4f}, about {_duration(left)} left in this epoch")

    def _end_epoch(self, log: MetricsLog) -> None:
        cfg, st = self.cfg, self.state
        dev = self.evaluate(self.model, self.dev_data) if self.dev_data is not None else {}
        if dev and self.metric not in dev:
            raise AttnkitError(f"train.metric: {self.metric!r} is not computed for this task; "
                               f"known: {', '.join(k for k, v in dev.items() if isinstance(v, float))}")
        record = {"epoch": st["epoch"] + 1, "step": st["step"], "train": self._epoch_train,
                  "dev": {k: v for k, v in dev.items() if isinstance(v, (int, float))}}
        st["history"].append(record)
        value = dev.get(self.metric, -self._epoch_train["loss"])
        improved = _better(value, st["best"], self.minimize)
        if improved:
            st["best"], st["best_epoch"], st["bad_epochs"] = value, len(st["history"]) - 1, 0
        else:
            st["bad_epochs"] += 1
        st["epoch"] += 1
        st["batch"], st["loss_sum"], st["seen"] = 0, 0.0, 0
        log.write({"kind": "epoch", **{k: v for k, v in record.items() if k not in ("train", "dev")},
                   **{f"train_{k}": v for k, v in record["train"].items()},
                   **{f"dev_{k}": v for k, v in record["dev"].items()}}, st["step"])
        if improved and self.world.main:
            save_checkpoint(self.files.best_checkpoint, {"model": self.model_state(), "epoch": st["epoch"],
                                                        "dev": record["dev"]})
        if cfg.average_last and self.world.main:
            save_checkpoint(self.files.epoch_checkpoint(st["epoch"]), {"model": self.model_state()})
            self.files.epoch_checkpoint(st["epoch"] - cfg.average_last).unlink(missing_ok=True)
        self.save()
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record["dev"].items() if k in (self.metric, "loss"))
        self._print(f"epoch {st['epoch']}/{cfg.epochs}: train loss {self._epoch_train['loss']:.4f}"
                    f"{', dev ' + shown if shown else ''}"
                    f" ({self._epoch_train['samples_per_s']:.0f} samples/s){' *' if improved else ''}")

    def averaged_checkpoints(self) -> list[Path]:
        """The epoch checkpoints ``train.average_last`` averages (the last N that exist)."""
        last = self.state["epoch"]
        paths = [self.files.epoch_checkpoint(e) for e in range(max(1, last - self.cfg.average_last + 1), last + 1)]
        return [p for p in paths if p.is_file()]

    def _print(self, text: str) -> None:
        log.info(text)
