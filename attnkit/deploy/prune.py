"""``attnkit prune``: a fine-tuned Transformer run with its least important attention heads
(and feed-forward neurons) removed physically, importance measured on labelled examples
(:mod:`attnkit.finetune.pruning`). The result is a plain run with every weight saved and the
pruned shapes in ``meta.json``, so ``load_run`` rebuilds them."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError, DeployError
from ..finetune import merge_lora
from ..finetune.pruning import count_units, importance, plan, prune
from ..run_files import EVAL, REPORT, WEIGHTS
from ..rundir import check_new_out, derived_run, load_run
from .engines import read_engine
from .merge import write_merged

PRUNABLE = ("full", "lora", "ia3", "bitfit")  # methods whose weights end up plain Linear layers (LoRA/IA3 merged)


def prune_run(run_dir: str | Path, out: str | Path, heads: float, ffn: float = 0.0, data: str | Path | None = None,
              examples: int = 1024, batch_size: int = 1, progress: bool | None = None) -> Path:
    """Write ``out``: ``run_dir`` without the ``heads`` fraction of its least important
    attention heads and the ``ffn`` fraction of its feed-forward neurons. Importance is
    measured on ``examples`` labelled examples of ``data`` (default: the run's training split),
    one example per backward pass by default: Michel et al. average each example's own
    |gradient|, and in a batch's mean loss gradients of opposite sign would cancel.
    ``progress``: a bar over the examples (default: when stderr is a terminal)."""
    run_dir, out = Path(run_dir), Path(out)
    for name, value in (("--heads", heads), ("--ffn", ffn)):
        if not 0.0 <= value < 1.0:  # [0, 1), unlike unit_interval's [0, 1]: removing every unit is no model
            raise ConfigError(f"{name}: the fraction to remove must be in [0, 1), got {value}")
    if heads == 0 and ffn == 0:
        raise ConfigError("prune: say what to remove (--heads FRACTION and/or --ffn FRACTION)")
    check_new_out(out)
    if read_engine(run_dir):
        raise DeployError(f"{run_dir}: is an exported or compressed run; prune the run it was made from, then "
                          f"export that")
    run = load_run(run_dir)
    if run.cfg.model.pretrained is None:
        raise DeployError(f"{run_dir}: structured pruning applies to fine-tuned Transformer runs (model.pretrained); "
                          f"this is a {run.cfg.task} model from blocks")
    method = run.cfg.model.finetune.method
    if method not in PRUNABLE:
        raise DeployError(f"{run_dir}: a {method} run cannot be pruned (its {method} weights sit inside the layers "
                          f"pruning reshapes); prune a run fine-tuned with {', '.join(PRUNABLE)}")
    merge_lora(run.model)
    task, fz = run.task, run.featurized
    raw = task.read_file(run.cfg, data) if data is not None else task.read_splits(run.cfg)[0]
    encoded = task.encode(fz, raw)
    n = min(examples, len(encoded))
    picks = [round(i * (len(encoded) - 1) / max(n - 1, 1)) for i in range(n)]  # spread over the file
    batches = [encoded.collate(picks[i:i + batch_size]) for i in range(0, n, batch_size)]
    shown = sys.stderr.isatty() if progress is None else progress
    try:
        before = count_units(run.model)
        record = prune(run.model, plan(importance(run.model, batches, run.model.loss, shown), heads, ffn))
    except ValueError as e:
        raise DeployError(f"{run_dir}: {e}") from None
    after = count_units(run.model)
    if after == before:
        raise DeployError(f"{run_dir}: these fractions remove no unit ({before['heads']} heads, {before['ffn']:,} "
                          f"feed-forward neurons, every layer keeps one); ask for more")
    with derived_run(run_dir, out, skip=(WEIGHTS, EVAL, REPORT, "eval-*.json")) as tmp:  # not its metrics now
        write_merged(run, tmp, pruned_from=str(run_dir), pruned={**record, "before": before, "after": after,
                                                                 "measured_on": n})
    return out
