"""Folding a LoRA/IA3 run's adapter weights into its backbone: a plain run for deployment."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import save_yaml, to_dict
from ..files import write_json
from ..finetune import merge_lora
from ..models import count_parameters
from ..run_files import CHECKPOINTS, EVENTS, WEIGHTS, RunFiles
from ..rundir import RunError, load_run, save_weights


def merge_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write ``out``: the run ``run_dir`` with its LoRA/IA3 weights folded into the backbone
    (config ``finetune.method: full``, every weight saved), loadable without PEFT."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise RunError(f"--out {out}: already exists")
    run = load_run(run_dir)
    if not merge_lora(run.model):
        raise RunError(f"{run_dir}: nothing to merge (method {run.cfg.model.finetune.method!r}; merging applies to "
                       f"lora and ia3 runs)")
    run.model.requires_grad_(True)  # every weight is now part of the deployed model
    cfg = to_dict(run.cfg)
    cfg["model"]["finetune"]["method"] = "full"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns(CHECKPOINTS, EVENTS, WEIGHTS))
    files = RunFiles(tmp)
    save_yaml(cfg, files.config)
    meta = {**run.meta, "weights": "all", "merged_from": str(run_dir)}
    trainable, total = count_parameters(run.model)
    meta["parameters"] = {"trainable": trainable, "total": total}
    write_json(files.meta, meta)
    save_weights(run.model, files.weights, everything=True)
    tmp.rename(out)
    return out
