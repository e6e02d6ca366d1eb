"""The status page in a real browser: a domain taken through rotations (the unit tests'
environment: the whole App over in-memory DNS with a manual clock), its pages rendered and
opened in headless Chromium through chromedriver.

The pages are served by a small http.server thread on 127.0.0.1: a stand-in for the API,
which mounts the same renderers at `/` (and `/identity?name=`) behind its token check. The
pages are rendered up front in the test's thread (the SQLite store stays in the thread that
opened it); the server only hands out the strings."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from rotator.statuspage import build_identity, build_overview, render_identity, render_overview
from tests.support.browser import HAVE_BROWSER, keep
from tests.unit.conftest import UnitEnv, default_policies

pytestmark = pytest.mark.integration

if not HAVE_BROWSER and not os.environ.get("CI"):
    pytest.skip("chromium and chromium-driver not installed", allow_module_level=True)


def serve(pages: dict[str, str]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            data = (body or "not found").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_status_page_shows_a_rotation_in_chromium(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    env = UnitEnv(tmp_path / "env", default_policies())
    try:
        # example.com: generated, active 60s, rotated twice (demo policy: every 60s, a 30s
        # drain); stopped while the second key drains
        env.app.onboarding.add_identity("example.com", "demo")
        for _ in range(28):
            env.app.lifecycle.tick()
            env.clock.advance(5)
        # another domain whose first publish the primary refuses: a current problem
        env.dns.fail_publish = "REFUSED by the primary"
        env.app.onboarding.add_identity("broken.example", "demo")
        env.app.lifecycle.tick()
        now = env.clock.now()
        keys = sorted(env.store.list_keys("example.com"), key=lambda k: k.created_at)
        identity = build_identity(env.app, "example.com", now)
        assert identity is not None
        pages = {
            "/": render_overview(build_overview(env.app, now)),
            "/?q=example": render_overview(build_overview(env.app, now, "example")),
            "/identity?name=example.com": render_identity(identity),
        }
    finally:
        env.store.close()
    assert [k.state.value for k in keys] == ["destroyed", "draining", "active"]

    server, base = serve(pages)
    try:
        browser.get(base + "/")
        assert browser.title == "Key rotation status - rotator"
        counts = {
            r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
            for r in browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
        }
        assert counts == {
            "generated": "1", "published": "0", "verified": "0", "active": "1",
            "draining": "1", "revoked": "0", "destroyed": "1",
        }  # fmt: skip
        problems = [
            [td.text for td in r.find_elements(By.TAG_NAME, "td")]
            for r in browser.find_elements(By.CSS_SELECTOR, "#problems tbody tr")
        ]
        assert [(p[0], p[1], p[4]) for p in problems] == [
            ("failing", "broken.example", "dns-update-failed")
        ]
        assert "REFUSED by the primary" in problems[0][3]
        keep(browser, tmp_path, "statuspage-overview.png")

        # the search form, submitted as an operator would
        box = browser.find_element(By.ID, "q")
        box.send_keys("example")
        box.submit()
        WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/?q=example"))
        matches = browser.find_elements(By.CSS_SELECTOR, "#matches tbody tr")
        assert sorted(r.find_element(By.TAG_NAME, "td").text for r in matches) == [
            "broken.example",
            "example.com",
        ]
        browser.find_element(By.LINK_TEXT, "example.com").click()
        WebDriverWait(browser, 15).until(lambda d: "identity?name=" in d.current_url)

        assert browser.find_element(By.TAG_NAME, "h1").text == "example.com"
        bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline g.bar")
        assert [b.get_attribute("data-key") for b in bars] == [k.key_id for k in keys]
        states = [
            [r.get_attribute("data-state") for r in b.find_elements(By.CSS_SELECTOR, "rect")]
            for b in bars
        ]
        lifecycle = ["generated", "published", "verified", "active"]
        assert states == [
            [*lifecycle, "draining", "revoked", "destroyed"],
            [*lifecycle, "draining"],
            lifecycle,
        ]
        # the drain window is drawn: as wide as 30s of a 140s axis, not a sliver
        drain = bars[0].find_element(By.CSS_SELECTOR, "rect[data-state=draining]")
        active = bars[0].find_element(By.CSS_SELECTOR, "rect[data-state=active]")
        assert drain.size["width"] > 0.4 * active.size["width"] > 20
        rows = browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == [
            "destroyed",
            "draining",
            "active",
        ]
        shot = keep(browser, tmp_path, "statuspage-identity.png")
        assert shot.stat().st_size > 10_000
    finally:
        server.shutdown()
        server.server_close()
