"""The page at ``/`` in headless Chromium, as a person uses it: type a text, press Predict,
see the label and the explanation shading; press Route, see the route."""
import shutil
import tempfile

import pytest
import yaml

from tests.explain.browser import FLAGS, chromium_missing

from .test_server import start

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


def test_page_predicts_explains_and_routes(text_run, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    table = tmp_path / "routes.yaml"
    table.write_text(yaml.safe_dump({"handoff": "human", "threshold": 0.0, "routes": {"happy": ["pos"]}}))
    proc, url = start([f"films={text_run}", "--router", str(table)])
    profile = tempfile.mkdtemp(prefix="attnkit-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys("a good film")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_elements(By.ID, "shading") or d.find_elements(By.ID, "error"))
        assert not driver.find_elements(By.ID, "error"), driver.find_element(By.ID, "error").text
        assert driver.find_element(By.ID, "label").text in ("pos", "neg")
        words = driver.find_elements(By.CSS_SELECTOR, "#shading .w")
        assert [w.text for w in words] == ["a", "good", "film"]
        assert any("rgba(230, 85, 13" in w.get_attribute("style") for w in words)
        driver.find_element(By.ID, "route").click()
        wait.until(lambda d: d.find_elements(By.ID, "routed") or d.find_elements(By.ID, "error"))
        assert "route" in driver.find_element(By.ID, "routed").text
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, severe
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        proc.terminate()
        proc.wait(timeout=30)
