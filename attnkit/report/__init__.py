"""``RUN/report.html``: one self-contained page per run."""
from .html_report import write_report

__all__ = ["write_report"]
