"""``attnkit recommend``: the items a recommendation run ranks highest for one user."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..rundir import LoadedRun, load_run


def recommend(run_dir: str | Path | LoadedRun, user: str, top: int = 10) -> dict:
    """``{"user", "rated", "fallback", "items": [{"item", "title", "score", "rating", "because"}]}``
    for ``user`` (an id as in the ratings files); rated items are left out."""
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    if not hasattr(run.task, "recommend"):
        raise ConfigError(f"recommend: {run.path} is a {run.cfg.task} run, not a recommendation run")
    if top < 1:
        raise ConfigError(f"recommend: --top must be >= 1, got {top}")
    return run.task.recommend(run.model, run.featurized, user, top)
