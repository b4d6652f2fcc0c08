"""attnkit: programmable attention on PyTorch, checked against float64 references."""
import logging as _logging
import sys as _sys

__version__ = "0.1.0"


class _StderrHandler(_logging.Handler):
    """Progress and warnings as plain lines on the current ``sys.stderr`` (looked up at each
    record, so redirected or captured streams receive them). Remove it, or configure the
    ``attnkit`` logger, to route them elsewhere."""

    def emit(self, record: _logging.LogRecord) -> None:
        try:
            _sys.stderr.write(self.format(record) + "\n")
            _sys.stderr.flush()
        except Exception:  # noqa: BLE001  (logging must never break a run)
            self.handleError(record)


_log = _logging.getLogger("attnkit")
if not _log.handlers:
    _log.addHandler(_StderrHandler())
    _log.setLevel(_logging.INFO)
    _log.propagate = False
