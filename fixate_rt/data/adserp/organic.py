"""Organic result boxes of a saved Google result page, from headless Chromium, cached on disk.

AdSERP's JSON holds only the ad boxes; the organic results come from laying the page's HTML out at the trial's
window width. Chromium (Debian's ``chromium``) runs in a **network namespace of its own** (``unshare --net``:
no interface but a loopback that is down), so the third-party HTML can reach nothing — no TCP, no UDP (WebRTC
and STUN included), no DNS — by construction rather than by a list of blocked request kinds. fixate-rt drives it
over Chromium's DevTools pipe (``--remote-debugging-pipe``: two inherited file descriptors), which needs no
socket at all. Boxes are cached per (HTML content, window width) so a re-import needs no browser.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from ...errors import InputError
from ...io import write_json

CACHE_VERSION = "organic-v1"
CHROMIUM_FLAGS = ["--headless=new", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
                  "--no-pings", "--dns-prefetch-disable", "--disable-domain-reliability",
                  "--disable-features=NetworkPrediction,OptimizationHints,Translate,MediaRouter,WebRtcHideLocalIpsWithMdns",
                  # Belt and braces inside the namespace: WebRTC may use no UDP that a proxy does not carry, host
                  # names never resolve, and everything else goes to a proxy on the discard port.
                  "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
                  "--webrtc-ip-handling-policy=disable_non_proxied_udp",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                  "--proxy-bypass-list=<-loopback>",
                  # Chromium's own sandbox cannot start as root or inside the user namespace that non-root runs
                  # need; the network namespace is the boundary that matters here (the page is a local file).
                  "--no-sandbox"]


def network_jail() -> list[str]:
    """The command prefix that runs a program with no network (a fresh network namespace), checked to work."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise InputError("laying pages out needs `unshare` (util-linux) to run Chromium without network; "
                         "apt-get install util-linux")
    jail = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    try:
        probe = subprocess.run([*jail, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot create a network namespace for Chromium ({exc}); fixate-rt renders third-party "
                         "pages only without network") from None
    if probe.returncode != 0:
        why = (probe.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1][:160]
        raise InputError(f"cannot create a network namespace for Chromium ({why}); fixate-rt renders third-party "
                         "pages only without network (unprivileged user namespaces must be enabled, or run as root)")
    return jail


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
    """Headless Chromium is not installed."""


def cache_key(html: bytes, width_css: int) -> str:
    return f"{hashlib.sha256(html).hexdigest()[:24]}-w{width_css}-{CACHE_VERSION}"


class OrganicBoxes:
    """Organic result boxes per page, from the cache or from Chromium (started on the first cache miss)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.hits = self.misses = 0
        self._browser: _Browser | None = None

    def __enter__(self) -> OrganicBoxes:
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
            self._browser = None

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
        if self._browser is None:
            self._browser = _Browser.start()
        payload = self._browser.layout(Path(html_path).resolve(), width_css)
        self.misses += 1
        write_json(cached, payload)
        return payload


def find_browser() -> str:
    """The chromium executable; ``FIXATE_RT_CHROMIUM`` overrides."""
    chromium = os.environ.get("FIXATE_RT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not Path(chromium).exists():
        raise ChromiumMissing(
            "finding organic result boxes needs headless Chromium: install Debian's package chromium "
            "(apt-get install chromium); no browser is downloaded. A re-import whose boxes are cached needs no browser.")
    return chromium


BASH = shutil.which("bash") or "/bin/bash"


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 10 or above (so moving it onto 3 or 4 in the child never clobbers the other)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class _Browser:
    """One headless Chromium in its own network namespace, driven over the DevTools pipe (JSON + NUL per message)."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int, timeout_s: float) -> None:
        self.proc, self.to_browser, self.from_browser = proc, to_browser, from_browser
        self.timeout_s, self._buffer, self._next_id, self.session = timeout_s, b"", 0, ""

    @classmethod
    def start(cls, timeout_s: float = 60.0) -> _Browser:
        chromium = find_browser()
        jail = network_jail()
        commands_r, commands_w = (_high_fd(fd) for fd in os.pipe())
        replies_r, replies_w = (_high_fd(fd) for fd in os.pipe())
        # Chromium reads commands on fd 3 and writes replies on fd 4 (bash: dash redirects only fds 0-9).
        shell = f'exec 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-; exec "$@"'
        try:
            proc = subprocess.Popen([BASH, "-c", shell, "bash", *jail, chromium, *CHROMIUM_FLAGS,
                                     "--remote-debugging-pipe", "--window-size=1422,1137", "about:blank"],
                                    pass_fds=(commands_r, replies_w), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(commands_r)
            os.close(replies_w)
        browser = cls(proc, commands_w, replies_r, timeout_s)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            browser.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            browser.call("Page.enable")
        except InputError:
            browser.close()
            raise
        return browser

    def call(self, method: str, params: dict | None = None) -> dict:
        """Send one DevTools command (to the page's session once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        try:
            os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise InputError(f"headless Chromium stopped ({exc.strerror or exc})") from None
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise InputError(f"headless Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_browser], [], [], max(0.0, left))
            if not ready:
                raise InputError(f"headless Chromium did not answer within {self.timeout_s:.0f} s")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise InputError("headless Chromium did not start or stopped (is Debian's chromium installed?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def layout(self, html: Path, width_css: int, settle_s: float = 20.0) -> dict:
        """Boxes once the page has loaded (this file, fonts included) and two reads 200 ms apart agree: the
        page's own scripts may still move things right after the load event, more so on a busy machine."""
        self.call("Emulation.setDeviceMetricsOverride", {"width": width_css, "height": 1137,
                                                         "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": html.as_uri()})
        deadline, previous = time.monotonic() + settle_s, None
        while True:
            result = self.call("Runtime.evaluate", {"expression": f"(() => {{{EXTRACT_JS}}})()",
                                                    "returnByValue": True})
            value = result.get("result", {}).get("value") or {}
            loaded = bool(value) and value["ready"] and value["href"].endswith(html.name)
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
            self.call("Browser.close")
        except (InputError, ValueError):
            pass
        finally:
            for fd in (self.to_browser, self.from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
