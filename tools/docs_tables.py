"""Regenerate the docs' tables of config keys from the config dataclasses, so they cannot
drift: ``python tools/docs_tables.py`` rewrites them, ``--check`` fails when they differ
(``tests/test_docs_tables.py`` runs the check in ``make test``).

A table lives between ``<!-- keys:SECTION -->`` and ``<!-- /keys:SECTION -->`` markers."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tables() -> dict[str, str]:
    """Section name -> its Markdown table, from the config dataclasses."""
    from attnkit.config import keys_table
    from attnkit.data.data_config import DataConfig

    return {"data": keys_table(DataConfig, "data")}


def render(text: str) -> str:
    """``text`` with every marked table replaced by the generated one."""
    for section, table in tables().items():
        pattern = re.compile(rf"(<!-- keys:{section} -->\n).*?(<!-- /keys:{section} -->)", re.DOTALL)
        text = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(2), text)
    return text


def stale(paths=None) -> list[Path]:
    """The docs files whose tables differ from the generated ones."""
    paths = paths or sorted((ROOT / "docs").glob("*.md"))
    return [p for p in paths if render(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]


def main() -> None:
    """Rewrite the tables, or with ``--check`` list the stale files and exit 1."""
    files = stale()
    if "--check" in sys.argv:
        if files:
            sys.exit("stale key tables in " + ", ".join(map(str, files)) + ": run python tools/docs_tables.py")
        return
    for p in files:
        p.write_text(render(p.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"rewrote {p}")


if __name__ == "__main__":
    main()
