"""Deployment: a trained run -> a run that is smaller or faster to ship, each a new run
directory that ``predict``, ``evaluate`` and ``explain`` take unchanged: LoRA merged
(:func:`merge_run`), exported as an ONNX graph (:func:`export_run`), compressed to int8
(:func:`compress_run`), structurally pruned (:func:`prune_run`), and the engine that runs it (:func:`attach_engine`)."""
from .compress import compress_run
from .engines import ENGINES, OrtModel, attach_engine, engine_name, read_engine
from .export import export_run
from .merge import merge_run
from .prune import prune_run

__all__ = ["ENGINES", "OrtModel", "attach_engine", "engine_name", "compress_run", "export_run", "merge_run", "prune_run", "read_engine"]
