"""The docs' tables of config keys are the ones the config dataclasses generate."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "tools" / "docs_tables.py")
docs_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs_tables)


def test_every_data_key_is_in_the_docs_table_and_the_table_is_current():
    from attnkit.data.data_config import DataConfig
    import dataclasses

    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert "<!-- keys:data -->" in text
    for f in dataclasses.fields(DataConfig):
        assert f"`data.{f.name}`" in text, f.name
        assert f.metadata.get("doc"), f"data.{f.name} has no doc"
    assert docs_tables.stale() == [], "run python tools/docs_tables.py"


def test_a_changed_table_is_found_stale(tmp_path):
    p = tmp_path / "x.md"
    p.write_text("before\n<!-- keys:data -->\n| old |\n<!-- /keys:data -->\nafter\n", encoding="utf-8")
    assert docs_tables.stale([p]) == [p]
    p.write_text(docs_tables.render(p.read_text(encoding="utf-8")), encoding="utf-8")
    assert docs_tables.stale([p]) == [] and "`data.encoding` | `auto`" in p.read_text(encoding="utf-8")
