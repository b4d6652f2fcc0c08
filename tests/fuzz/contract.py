"""The contract every entry point keeps on any input: a result, or one clean error line
(``error: <what is wrong, naming the key path or file and line>``) with exit code 2; never a
traceback; no partly written output; nothing that existed overwritten.

``invoke`` runs the CLI in-process exactly as the console script does (``attnkit.cli.run``),
so a case costs milliseconds, not a new interpreter. Outcomes are counted per entry point;
``ATTNKIT_FUZZ_LOG=FILE`` appends them as JSON lines (``benchmarks/fuzz.py`` sums them)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from attnkit.errors import AttnkitError


@dataclass
class Outcome:
    """How one call ended."""

    code: int
    out: str
    err: str
    kind: str  # "result", "clean_error", "traceback"


def invoke(argv: list[str]) -> Outcome:
    """``attnkit ARGV`` in-process: exit code, stdout, stderr and the kind of ending."""
    from attnkit.cli import run

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["attnkit", *map(str, argv)]
    code, kind = 0, "result"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # noqa: BLE001  (an exception escaping the CLI is the failure this harness looks for)
        code, kind = 1, "traceback"
        err.write(traceback.format_exc())
    finally:
        sys.argv = old
    if kind == "result" and code != 0:
        kind = "clean_error"
    return Outcome(code, out.getvalue(), err.getvalue(), kind)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def record(entry: str, outcome_kind: str, detail: str = "") -> None:
    """Count an outcome (for the benchmark's table)."""
    path = os.environ.get("ATTNKIT_FUZZ_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"entry": entry, "kind": outcome_kind, "detail": detail[:200]}) + "\n")


def check_cli(entry: str, argv: list[str], out_dir: Path | None = None, keep: Path | None = None) -> Outcome:
    """Run ``argv`` and assert the contract. ``out_dir``: where a failed command must have
    written nothing (it did not exist before); ``keep``: a folder whose files must not change."""
    existed = out_dir is not None and out_dir.exists()
    before = snapshot(keep) if keep is not None else None
    o = invoke(argv)
    record(entry, o.kind, o.err.strip().splitlines()[-1] if o.err.strip() else "")
    assert o.kind != "traceback", f"attnkit {' '.join(map(str, argv))} ended in a traceback:\n{o.err}"
    assert "Traceback" not in o.err + o.out, o.err
    if o.kind == "clean_error":
        assert o.code == 2, (o.code, o.err)
        lines = [line for line in o.err.strip().splitlines() if line.strip()]
        errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
        if errors:  # attnkit's own errors: exactly one line, the last (log lines may come before it)
            lines = lines[errors[0]:]
            assert len(lines) == 1, o.err
            assert len(lines[0]) > len("error: ") + 10, o.err
        else:  # a usage error, as click prints it (usage line and the problem), no traceback
            assert "Usage:" in o.err or "Error" in o.err, o.err
        if out_dir is not None and not existed:
            assert not out_dir.exists(), f"a failed command left {out_dir}: {sorted(os.listdir(out_dir))}"
    if keep is not None:
        assert snapshot(keep) == before, f"{keep} changed"
    return o


def check_call(entry: str, fn, *args, **kwargs):
    """A Python API call: a result, or an AttnkitError (one line); anything else fails."""
    try:
        result = fn(*args, **kwargs)
    except AttnkitError as e:
        record(entry, "clean_error", str(e))
        assert "\n" not in str(e).strip(), str(e)
        return e
    except Exception:  # noqa: BLE001
        record(entry, "traceback", traceback.format_exc().splitlines()[-1])
        raise
    record(entry, "result")
    return result
