"""Organic result boxes of a saved Google result page, from headless Chromium, cached on disk.

AdSERP's JSON holds only the ad boxes; the organic results come from laying the page's HTML out at the trial's
window width. Chromium (Debian's ``chromium`` + ``chromium-driver``) is driven through chromedriver's W3C
WebDriver HTTP API with the standard library only; nothing is downloaded. Boxes are cached per (HTML content,
window width) so a re-import needs no browser.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ...errors import InputError
from ...io import write_json

CACHE_VERSION = "organic-v1"
CHROMIUM_FLAGS = ["--headless=new", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
                  "--no-pings", "--dns-prefetch-disable", "--disable-domain-reliability",
                  "--disable-features=NetworkPrediction,OptimizationHints,Translate,MediaRouter"]
# Third-party HTML must not reach the network: no host name resolves, and every request that needs no name
# (an IP literal, loopback included: "<-loopback>" removes Chromium's implicit bypass) goes to a proxy on the
# discard port, which nothing serves. Only the local file itself loads.
NO_NETWORK_FLAGS = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                    "--proxy-bypass-list=<-loopback>"]


def sandbox_flags() -> list[str]:
    """Chromium's own sandbox where the platform allows it; it cannot run as root, so root gets --no-sandbox."""
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
# The k-th <div> child of #rso is what the click logs call //*[@id='rso']/div[k]: its page box in CSS px.
EXTRACT_JS = """
const rso = document.getElementById('rso');
const out = [];
if (rso) {
  let k = 0;
  for (const child of rso.children) {
    if (child.tagName !== 'DIV') continue;
    k += 1;
    const r = child.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) out.push([k, r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY]);
  }
}
return {found: !!rso, boxes: out, width: innerWidth, height: document.documentElement.scrollHeight,
        ready: document.readyState === 'complete' && document.fonts.status === 'loaded', href: location.href};
"""


class ChromiumMissing(InputError):
    """Headless Chromium or chromedriver is not installed."""


def cache_key(html: bytes, width_css: int) -> str:
    return f"{hashlib.sha256(html).hexdigest()[:24]}-w{width_css}-{CACHE_VERSION}"


class OrganicBoxes:
    """Organic result boxes per page, from the cache or from Chromium (started on the first cache miss)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.hits = self.misses = 0
        self._driver: _WebDriver | None = None

    def __enter__(self) -> OrganicBoxes:
        return self

    def __exit__(self, *exc) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def boxes(self, html_path: Path, width_css: int) -> dict:
        """``{"found": bool, "boxes": [[rank, x0, y0, x1, y1], ...]}`` in page CSS px."""
        key = cache_key(Path(html_path).read_bytes(), width_css)
        cached = self.cache_dir / f"{key}.json"
        if cached.exists():
            try:
                payload = json.loads(cached.read_text())
                self.hits += 1
                return payload
            except json.JSONDecodeError:
                pass  # a damaged cache entry is recomputed
        if self._driver is None:
            self._driver = _WebDriver.start()
        payload = self._driver.layout(Path(html_path).resolve(), width_css)
        self.misses += 1
        write_json(cached, payload)
        return payload


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) executables; ``FIXATE_RT_CHROMIUM`` / ``FIXATE_RT_CHROMEDRIVER`` override."""
    chromium = os.environ.get("FIXATE_RT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("FIXATE_RT_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver))
               if not path or not Path(path).exists()]
    if missing:
        raise ChromiumMissing(
            "finding organic result boxes needs headless Chromium: install Debian's packages "
            f"{' and '.join(missing)} (apt-get install chromium chromium-driver); no browser is downloaded. "
            "A re-import whose boxes are cached needs no browser.")
    return chromium, driver


class _WebDriver:
    """A minimal W3C WebDriver client for one headless Chromium session."""

    def __init__(self, proc: subprocess.Popen, base: str, session: str) -> None:
        self.proc, self.base, self.session = proc, base, session

    @classmethod
    def start(cls, timeout_s: float = 30.0) -> _WebDriver:
        chromium, driver = find_browser()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _request("GET", f"{base}/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise InputError(f"{driver}: chromedriver did not start") from None
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": CHROMIUM_FLAGS + NO_NETWORK_FLAGS + sandbox_flags() + ["--window-size=1422,1137"]}}}}
        try:
            session = _request("POST", f"{base}/session", caps)["value"]["sessionId"]
        except (urllib.error.URLError, KeyError) as exc:
            proc.kill()
            raise InputError(f"{chromium}: headless Chromium did not start ({exc})") from None
        return cls(proc, base, session)

    def layout(self, html: Path, width_css: int, settle_s: float = 20.0) -> dict:
        """Boxes once the page has loaded (this file, fonts included) and two reads 200 ms apart agree: the
        page's own scripts may still move things right after the load event, more so on a busy machine."""
        url = f"{self.base}/session/{self.session}"
        _request("POST", f"{url}/window/rect", {"width": width_css, "height": 1137})
        _request("POST", f"{url}/url", {"url": html.as_uri()})
        deadline, previous = time.monotonic() + settle_s, None
        while True:
            value = _request("POST", f"{url}/execute/sync", {"script": EXTRACT_JS, "args": []})["value"]
            loaded = value["ready"] and value["href"].endswith(html.name)
            current = (value["found"], value["boxes"], value["height"]) if loaded else None
            if current is not None and current == previous:
                break
            if time.monotonic() > deadline:
                raise InputError(f"{html}: the page did not settle in headless Chromium within {settle_s:.0f} s")
            previous = current
            time.sleep(0.2)
        if value["width"] != width_css:
            raise InputError(f"{html}: Chromium laid the page out {value['width']} px wide, not {width_css}")
        return {"found": value["found"], "boxes": value["boxes"], "width_css": width_css,
                "page_height_css": value["height"]}

    def close(self) -> None:
        try:
            _request("DELETE", f"{self.base}/session/{self.session}")
        except (urllib.error.URLError, ConnectionError):
            pass
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _request(method: str, url: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())
