"""The status page as operators reach it: the daemon serves it with the API ([api] listen),
against the real BIND pair; Chromium logs in with a read token through the form, searches,
and opens the identity whose keys the daemon rotated."""

from __future__ import annotations

import os

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import HAVE_BROWSER, keep
from tests.support.http import Client

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv
from .test_metrics import free_port

pytestmark = pytest.mark.integration
if not HAVE_BROWSER and not os.environ.get("CI"):
    pytest.skip("chromium and chromium-driver not installed", allow_module_level=True)


@pytest.mark.timeout(240)
def test_an_operator_logs_in_and_sees_a_rotation(
    env: RotatorEnv, browser: webdriver.Chrome, tmp_path: object
) -> None:
    port = free_port()
    env.config.write_text(env.config.read_text() + f'\n[api]\nlisten = "127.0.0.1:{port}"\n')
    secret = env.cli("token", "create", "ops", "--scope", "read").stdout.strip()
    env.cli("domain", "add", DOMAIN, "--policy", "demo")  # rotates every 20 s, drains 9 s
    env.start()
    base = f"http://127.0.0.1:{port}"
    client = Client(base, timeout=20)

    def up() -> bool:
        try:
            return client.get("/login").status_code == 200
        except OSError:
            return False

    env.wait_for("the API", up, 30)
    first = env.wait_for("a first key", lambda: env.key_in_state(DOMAIN, "active"), 40)
    env.wait_for("its successor", lambda: env.key_in_state(DOMAIN, "draining"), 60)

    browser.get(base + "/")  # no token yet: the form
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/login"))
    box = browser.find_element(By.NAME, "token")
    box.send_keys(secret)
    box.submit()
    WebDriverWait(browser, 15).until(lambda d: d.current_url == base + "/")
    counts = {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
    }
    assert int(counts["active"]) == 1 and int(counts["draining"]) >= 1
    search = browser.find_element(By.ID, "q")
    search.send_keys(DOMAIN)
    search.submit()
    WebDriverWait(browser, 15).until(lambda d: "q=" in d.current_url)
    browser.find_element(By.LINK_TEXT, DOMAIN).click()
    WebDriverWait(browser, 15).until(lambda d: "identity?name=" in d.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == DOMAIN
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline g.bar")
    assert len(bars) >= 2 and bars[0].get_attribute("data-key") == first.key_id
    states = [r.get_attribute("data-state") for r in bars[0].find_elements(By.TAG_NAME, "rect")]
    assert states[:5] == ["generated", "published", "verified", "active", "draining"]
    shot = keep(browser, tmp_path, "statuspage-daemon-identity.png")  # type: ignore[arg-type]
    assert shot.stat().st_size > 10_000
    assert env.stop() == 0
    assert secret not in env.daemon_log.read_text()
