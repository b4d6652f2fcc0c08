"""``TASKS``: every task by name (one instance of a :class:`~attnkit.tasks.base.Task` each)."""
from __future__ import annotations

from ..errors import ConfigError
from ..registry import Registry
from .base import Task

TASKS: Registry[Task] = Registry("task")


def register_task(name: str, task: Task) -> Task:
    """Register ``task`` under ``name`` (its ``name`` attribute is set to it)."""
    task.name = name
    return TASKS.register(name)(task)


def get_task(name: str) -> Task:
    """The task called ``name``: a registered name, one an installed package declares (entry
    point group ``attnkit.tasks``), or ``module.path:ClassName`` (a task of your own, in a
    module Python can import); an unknown name lists the known ones."""
    if name not in TASKS:
        _load_plugin(name)
    return TASKS.get(name, where="task")


def _load_plugin(name: str) -> None:
    """Register the task ``name`` from an entry point or a ``module:Class`` reference."""
    import importlib
    import importlib.metadata

    target = next((ep.value for ep in importlib.metadata.entry_points(group="attnkit.tasks") if ep.name == name),
                  name if ":" in name else None)
    if target is None:
        return
    module, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"task: {name!r} cannot be loaded ({type(e).__name__}: {e}); a task of your own is "
                          f"module.path:ClassName with the module importable (on PYTHONPATH or installed)") from None
    task = obj() if isinstance(obj, type) else obj
    if not isinstance(task, Task):
        raise ConfigError(f"task: {name!r} is not a Task (attnkit.tasks.Task), got {type(task).__name__}")
    if name not in TASKS:  # importing the module may have registered it already
        register_task(name, task)
