"""``python -m attnkit``: the command line (what ``attnkit --nproc`` starts under torchrun)."""
from .cli import run

run()
