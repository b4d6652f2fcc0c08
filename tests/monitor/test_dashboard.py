"""The monitor's dashboard in headless Chromium: it loads with no console errors, every
figure draws, and the alert texts are shaded."""
import pytest

from attnkit.monitor import monitor
from tests.explain.browser import chromium_missing, open_page

from .conftest import records, write_jsonl

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


def test_dashboard_opens_in_a_browser_with_every_figure_drawn(text_run, tmp_path):
    rows = records(days=30, per_day=30, negative=lambda e, d: 0.85 if (e == "BETA" and d >= 20) else 0.15)
    summary = monitor(text_run, write_jsonl(tmp_path / "s.jsonl", rows), tmp_path / "out", progress=False)
    assert any(a["kind"] == "sentiment" for a in summary.alerts)
    page = open_page(tmp_path / "out" / "dashboard.html", tmp_path / "shot.png")
    assert page["state"] == "complete" and not page["errors"], page["errors"]
    assert page["title"] == "attnkit monitor: s.jsonl"
    names = [alt for alt, _ in page["images"]]
    assert names == ["index ACME", "index BETA", "drift"]
    assert all(width > 500 for _, width in page["images"]), page["images"]
    html = (tmp_path / "out" / "dashboard.html").read_text()
    assert 'class="tok" style="background:rgba(' in html and "http://" not in html and "https://" not in html
