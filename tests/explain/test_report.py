"""``RUN/report.html``: written by training and by ``attnkit report``, self-contained, with
every section; opened in headless Chromium as a person would."""
import base64
import re

import pytest
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.report import write_report

from .browser import chromium_missing, open_page

SECTIONS = ["Summary", "Training curves", "Final metrics", "Confusion matrix (dev)", "Dev examples",
            "Attention of one example", "Config"]


def check_self_contained(page: str) -> list[bytes]:
    """No scripts, no links out; every image an embedded PNG. Returns the decoded PNGs."""
    assert "<script" not in page and not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page
    pngs = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert pngs and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    return pngs


def test_training_writes_the_report(text_run):
    page = (text_run / "report.html").read_text(encoding="utf-8")
    assert [s for s in SECTIONS if f"<h2>{s}</h2>" not in page] == []
    assert len(check_self_contained(page)) == 3  # curves, confusion matrix, pooling weights
    assert "right (" in page and 'class="tok"' in page and "attention:" in page and "gradient x input:" in page
    assert "<td>pos</td>" in page and "<td>neg</td>" in page  # per-class table


def test_report_of_a_transformer_draws_layer_by_head_attention(transformer_run):
    assert not (transformer_run / "report.html").exists()  # train.report: false
    r = CliRunner().invoke(app, ["report", str(transformer_run), "--examples", "2"])
    assert r.exit_code == 0, r.output
    page = (transformer_run / "report.html").read_text(encoding="utf-8")
    assert 'alt="attention grid"' in page and 'alt="pooling weights"' in page
    check_self_contained(page)


def test_report_of_an_image_run_overlays_saliency(image_run):
    page = write_report(image_run, examples=2).read_text(encoding="utf-8")
    assert page.count('alt="saliency"') >= 2 and 'alt="image attention"' in page
    check_self_contained(page)


def test_report_of_a_tagger_marks_wrong_tags(tagger_run):
    page = (tagger_run / "report.html").read_text(encoding="utf-8")
    assert "explaining the tag of word" in page and "no confusion matrix" in page
    assert 'alt="attention grid"' in page


def test_report_without_the_dev_data_still_has_the_rest(text_run, tmp_path):
    import shutil

    moved = tmp_path / "run"
    shutil.copytree(text_run, moved)
    cfg = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(re.sub(r"dev: .*", f"dev: {tmp_path / 'gone.tsv'}", cfg))
    page = write_report(moved).read_text(encoding="utf-8")
    assert "dev data not readable" in page and "gone.tsv" in page and "<h2>Final metrics</h2>" in page


def test_report_opens_in_headless_chromium(text_run, tmp_path):
    why = chromium_missing()
    if why:
        pytest.skip(f"browser check skipped: {why}")
    shot = tmp_path / "report.png"
    seen = open_page(text_run / "report.html", shot)
    assert seen["state"] == "complete" and seen["title"].startswith("attnkit run report")
    assert seen["errors"] == []
    assert len(seen["images"]) == 3 and all(width > 0 for _, width in seen["images"]), seen["images"]
    assert shot.stat().st_size > 20_000 and shot.read_bytes().startswith(b"\x89PNG")


def test_browser_check_says_why_it_cannot_run(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda exe: None if exe == "chromedriver" else "/usr/bin/" + exe)
    assert chromium_missing() == "chromedriver not found (apt-get install chromium chromium-driver)"
