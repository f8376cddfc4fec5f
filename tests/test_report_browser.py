"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, driven through the
W3C WebDriver protocol with the standard library): it loads without console errors, its charts render
with real pixel variance, and the headline figures shown equal an independent computation.

Skips when chromium or chromedriver is missing, unless MAMMOBEAM_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np
import pytest

from mammobeam.analytics import report
from test_metrics_support import PSEUDONYMIZER, random_programme
from test_report import check_headline

pytestmark = pytest.mark.browser
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver element reference key


def _need_browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = ("headless browser test needs Debian's chromium and chromium-driver "
              f"(found chromium={chromium}, chromedriver={driver}); apt-get install chromium chromium-driver")
    print(reason)
    if os.environ.get("MAMMOBEAM_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class WebDriver:
    def __init__(self, chromium: str, driver: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 20
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        caps = {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {"binary": chromium, "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,2400", "--no-first-run", "--disable-extensions"]}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def __call__(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def find_all(self, css):
        return [e[ELEMENT] for e in self("POST", "/elements", {"using": "css selector", "value": css})]

    def close(self):
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    chromium, driver = _need_browser()
    web = WebDriver(chromium, driver)
    yield web
    web.close()


@pytest.fixture(scope="module")
def loaded(browser, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("browser"))
    truth = random_programme(root, n=150, seed=9)
    path = report.write_report(root, os.path.join(root, "report.html"), truth["outcomes"],
                               pseudonymizer=PSEUDONYMIZER, bootstrap=50)
    browser("POST", "/url", {"url": "file://" + path})
    return truth


def test_page_loads_without_console_errors(browser, loaded):
    assert browser("POST", "/execute/sync", {"script": "return document.readyState", "args": []}) == "complete"
    logs = browser("POST", "/se/log", {"type": "browser"})
    errors = [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_charts_render_with_real_pixel_variance(browser, loaded):
    charts = browser.find_all("svg.chart")
    names = [browser("GET", f"/element/{c}/attribute/data-chart") for c in charts]
    assert {"volume", "roc", "tradeoff", "hist-site-0", "hist-device-0"} <= set(names)
    for chart, name in zip(charts, names):
        browser("POST", "/execute/sync", {"script": "arguments[0].scrollIntoView()",
                                          "args": [{ELEMENT: chart}]})
        png = base64.b64decode(browser("GET", f"/element/{chart}/screenshot"))
        pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.shape[0] > 100 and pixels.shape[1] > 200, name
        assert pixels.std() > 10, f"chart {name} looks blank"
        # Drawn in colour, not only axes and text: bars, lines or markers are there.
        saturation = cv2.cvtColor(pixels, cv2.COLOR_BGR2HSV)[..., 1]
        assert (saturation > 80).mean() > 0.002, f"chart {name} has no coloured marks"


def test_headline_figures_shown_equal_an_independent_computation(browser, loaded):
    shown = {}
    for cell in browser.find_all("[data-metric]"):
        shown[browser("GET", f"/element/{cell}/attribute/data-metric")] = browser("GET", f"/element/{cell}/text")
    check_headline(shown, loaded)
