"""Runs: the config -> data -> model -> training -> run directory path, and what reads it."""
from .api import TrainResult, evaluate, merge_run, predict, resolve_config, train
from .config import DataConfig, RunConfig, run_config
from .rundir import LoadedRun, RunError, load_run

__all__ = ["DataConfig", "LoadedRun", "RunConfig", "RunError", "TrainResult", "evaluate", "load_run", "merge_run", "predict",
           "resolve_config", "run_config", "train"]
