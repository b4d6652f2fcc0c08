"""What a user does with a run: train it, evaluate it on a file, predict with it, merge it.
These are the workflows at the top of the package; the run directory itself is owned by
:mod:`attnkit.rundir` and every task-specific step is asked of :mod:`attnkit.tasks`."""
from ..data.data_config import DataConfig
from ..evaluate import evaluate_run as evaluate
from ..rundir import LoadedRun, RunError, load_run
from ..tasks import RunConfig, run_config
from ..deploy import merge_run
from .prediction import predict
from .training import TrainResult, resolve_config, train

__all__ = ["DataConfig", "LoadedRun", "RunConfig", "RunError", "TrainResult", "evaluate", "load_run", "merge_run",
           "predict", "resolve_config", "run_config", "train"]
