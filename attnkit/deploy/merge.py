"""Folding a LoRA/IA3 run's adapter weights into its backbone: a plain run for deployment
(``attnkit merge``), and the same step inside ``attnkit export``."""
from __future__ import annotations

from pathlib import Path

from ..config import save_yaml, to_dict
from ..files import write_json
from ..finetune import merge_lora
from ..models import count_parameters
from ..run_files import WEIGHTS, RunFiles
from ..rundir import LoadedRun, RunError, check_new_out, derived_run, load_run, save_weights


def merge_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write ``out``: the run ``run_dir`` with its LoRA/IA3 weights folded into the backbone
    (config ``finetune.method: full``, every weight saved), loadable without PEFT."""
    run_dir, out = Path(run_dir), Path(out)
    check_new_out(out)
    run = load_run(run_dir)
    if not merge_lora(run.model):
        raise RunError(f"{run_dir}: nothing to merge (method {run.cfg.model.finetune.method!r}; merging applies to "
                       f"lora and ia3 runs)")
    with derived_run(run_dir, out, skip=(WEIGHTS,)) as tmp:
        write_merged(run, tmp, merged_from=run_dir)
    return out


def write_merged(run: LoadedRun, where: Path, **meta_extra) -> None:
    """A merged model in ``where``: config with ``finetune.method: full``, meta.json and every
    weight (all are part of the deployed model now)."""
    run.model.requires_grad_(True)
    cfg = to_dict(run.cfg)
    cfg["model"]["finetune"]["method"] = "full"
    files = RunFiles(where)
    save_yaml(cfg, files.config)
    meta = {**run.meta, "weights": "all", **{k: str(v) if isinstance(v, Path) else v for k, v in meta_extra.items()}}
    trainable, total = count_parameters(run.model)
    meta["parameters"] = {"trainable": trainable, "total": total}
    write_json(files.meta, meta)
    save_weights(run.model, files.weights, everything=True)
