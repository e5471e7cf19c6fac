"""The report of `just smoke` in a real browser: headless Chromium driven over the DevTools protocol (a pipe,
so nothing beyond the standard library and Debian's `chromium` is needed). The page must load with no
console error, every image must decode, the screenshot must not be blank, the contents must link to real
sections, and the ECGs must show at real paper size."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CSS_PX_PER_MM = 96 / 25.4  # CSS reference pixel: 1 mm on screen at 100 % zoom


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class Browser:
    """Headless Chromium with `--remote-debugging-pipe`: JSON messages end with NUL, commands go in on fd 3 and
    answers and events come back on fd 4."""

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 900):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def as_fds_3_and_4() -> None:  # in the child: high copies first, so neither end overwrites the other
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=as_fds_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events, self.session = b"", 0, [], None

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        """A new tab, attached (flat session), with console and log events on, navigated to `url` until loaded."""
        self.session, self.events = None, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors (failed loads, CSP ...)."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                out.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


IMAGES = """Promise.all([...document.images].map(img => img.decode().then(
    () => ({ok: true, width: img.naturalWidth, height: img.naturalHeight, shown: img.getBoundingClientRect().width,
            style: img.style.width}),
    error => ({ok: false, error: String(error), alt: img.alt}))))"""
CONTENTS = """[...document.querySelectorAll('nav.toc a')].map(a => {
    const target = document.getElementById(decodeURIComponent(a.hash.slice(1)));
    return {href: a.hash, text: a.textContent, found: !!target && target.textContent === a.textContent};
})"""


@pytest.mark.slow
def test_report_renders_in_a_real_browser(smoke_run, tmp_path):
    from PIL import Image

    executable = find_browser()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium was found: .ci/run installs Debian's chromium package")
        pytest.skip("no Chromium on this machine (apt-get install chromium); CI installs it")
    run, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    page = run / "report" / "report.html"
    browser = Browser(executable, tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        images = browser.evaluate(IMAGES)
        contents = browser.evaluate(CONTENTS)
        height = browser.evaluate("document.documentElement.scrollHeight")
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 12000),
                                                                 "scale": 0.5}})
        problems = browser.problems()
        broken = tmp_path / "broken.html"  # the same checks on a faulty page must find its faults
        broken.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,iVBORw0KGgo=">'
                          '<script>console.error("deliberate")</script></body></html>')
        browser.open(broken.as_uri())
        broken_images, broken_problems = browser.evaluate(IMAGES), browser.problems()
    finally:
        browser.close()
    assert [i["ok"] for i in broken_images] == [False] and any("deliberate" in p for p in broken_problems)
    assert problems == []
    assert len(images) >= 6 and all(i["ok"] and i["width"] > 100 and i["height"] > 100 for i in images), images
    paper = [i for i in images if i["style"].endswith("mm")]
    assert len(paper) == 6  # the sample ECGs and the caption audit's, at real size: CSS millimetres of the sheet's width
    for image in paper:
        assert abs(image["shown"] - float(image["style"][:-2]) * CSS_PX_PER_MM) < 1.0, image
    assert len(contents) >= 8 and all(c["found"] for c in contents), contents
    screenshot = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L")).astype(float)
    assert screenshot.shape[0] > 1000
    inked = (screenshot < 200).mean()  # text, tables, grids and traces
    assert 0.02 < inked < 0.9 and screenshot.std() > 20, (inked, screenshot.std())
