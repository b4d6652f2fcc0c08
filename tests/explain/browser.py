"""Open an HTML file in headless Chromium (selenium + chromedriver from the Debian packages
chromium and chromium-driver), as a person would: screenshot, console errors, images."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1280,2000")


def chromium_missing() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} not found (apt-get install chromium chromium-driver)"
    return None


def open_page(html_file: Path, screenshot: Path) -> dict:
    """Load ``html_file``; returns ``{"errors": [console errors], "images": [(alt, naturalWidth)],
    "title": ...}`` and writes a full-page screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="attnkit-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(html_file).resolve().as_uri())
        state = driver.execute_script("return document.readyState")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete ? i.naturalWidth : 0])")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(int(height), 800), 16000))
        driver.save_screenshot(str(screenshot))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        return {"state": state, "errors": errors, "images": images, "title": driver.title}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
