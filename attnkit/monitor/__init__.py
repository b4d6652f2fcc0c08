"""Watching a live stream of texts with a trained classifier: a sentiment index per entity and
period, change alerts explained by their texts, and model-health drift against the training
data (``attnkit monitor``)."""
from .detect import DETECTORS
from .watcher import Monitor, MonitorSettings, Summary, monitor
from .stream import Columns

__all__ = ["DETECTORS", "Columns", "Monitor", "MonitorSettings", "Summary", "monitor"]
