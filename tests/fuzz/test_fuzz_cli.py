"""Command lines put together at random from the commands, options and values a user types:
a result, or a usage error / one attnkit error line, exit code 2, never a traceback."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from .contract import check_cli

# (`serve` is left out: a command line that names a real folder would start a server; its bad
# command lines are tested in tests/serve/test_server.py)
TOKENS = ["train", "evaluate", "predict", "explain", "report", "merge", "demo", "backends", "inspect-data", "--dry-run",
          "tune-oos", "--min-in-scope-accuracy", "--max-accuracy-drop", "--balanced", "--score", "--dev",
          "monitor", "--stream", "--period", "--detector", "--sensitivity", "--reference", "tune", "--trials",
          "--study", "recommend", "--user", "--top", "--attack", "pgd", "--epsilon", "--attack-steps", "--nproc",
          "--format", "--encoding", "--text-column", "--label-column", "--task", "klingon", "auto", "files", "*.x",
          "--out", "--set", "task=masked_lm", "task=multitask", "model.init_from=runs/none", "multitask.sampling=x",
          "--resume", "--data", "--input", "--json", "--method", "--target", "--word", "--steps", "--html",
          "--examples", "--debug", "--version", "--help", "ig", "attention", "saliency", "x", "-1", "0", "1e9",
          "nope.yaml", "/", "train.epochs=2", "=", "a=b", "", "runs/none", "--", "-", "é"]


@given(argv=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6))
def test_any_command_line(tmp_path_factory, argv):
    if "--help" in argv or "--version" in argv or argv[0] == "demo" and argv[1:2] in ([], ["train"]):
        argv = [a for a in argv if a not in ("--help", "--version")] or ["backends"]
    if argv[0] == "demo":
        argv = argv[:1] + ["attention-typo"]  # the real demos train or benchmark: exercised elsewhere
    tmp = tmp_path_factory.mktemp("cli")
    argv = [str(tmp / a) if a in ("runs/none", "nope.yaml") else a for a in argv]
    check_cli("cli arguments", argv)
