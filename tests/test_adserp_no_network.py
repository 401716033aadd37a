"""import-adserp lays third-party HTML out in headless Chromium without any network request."""

from __future__ import annotations

import http.server
import threading

from chromium import needs_chromium

from fixate_rt.data.adserp.organic import OrganicBoxes


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"#rso > div { height: 500px; }")

    def log_message(self, *args):
        pass


@needs_chromium
def test_page_with_remote_resources_is_laid_out_without_any_connection(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        page = tmp_path / "serp.html"
        page.write_text(f"""<!doctype html><html><head>
<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">
<link rel="stylesheet" href="http://localhost:{port}/other.css">
<script src="http://127.0.0.1:{port}/tracker.js"></script>
<link rel="stylesheet" href="https://www.gstatic.com/og/_/ss/k=og.qtm.x.css">
</head><body><div id="rso">
<div style="height:120px">first result <img src="http://127.0.0.1:{port}/pixel.png"></div>
<div style="height:80px">second result <iframe src="http://127.0.0.1:{port}/frame"></iframe></div>
</div><script>fetch("http://127.0.0.1:{port}/beacon").catch(() => 0)</script></body></html>""")
        with OrganicBoxes(tmp_path / "cache") as organic:
            payload = organic.boxes(page, 1422)
    finally:
        server.shutdown()
    assert _Counting.requests == []  # not one request reached the local server (nor, so, anything farther)
    assert payload["found"] and [b[0] for b in payload["boxes"]] == [1, 2]
    heights = [round(b[4] - b[2]) for b in payload["boxes"]]
    assert heights[0] >= 120 and heights[1] >= 80 and max(heights) < 500  # the remote stylesheet never applied


class _UdpListener:
    """Counts UDP datagrams to 127.0.0.1:port (a STUN server as far as the page knows)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recvfrom(2048)
                self.packets += 1
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


@needs_chromium
def test_every_channel_of_a_hostile_page_reaches_nothing(tmp_path):
    """fetch, image, beacon, WebSocket and WebRTC/STUN (UDP to an IP address, which request-blocking flags cannot
    stop) aimed at local listeners: nothing arrives, because the browser runs in a network namespace of its own."""
    import time

    _Counting.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    udp = _UdpListener()
    port = server.server_address[1]
    try:
        page = tmp_path / "hostile.html"
        page.write_text(f"""<!doctype html><html><body><div id="rso"><div style="height:90px">only result</div></div>
<script>
const pc = new RTCPeerConnection({{iceServers: [{{urls: "stun:127.0.0.1:{udp.port}"}}]}});
pc.createDataChannel("x");
pc.createOffer().then(offer => pc.setLocalDescription(offer));
try {{ new WebSocket("ws://127.0.0.1:{port}/socket"); }} catch (e) {{}}
new Image().src = "http://127.0.0.1:{port}/image.png";
navigator.sendBeacon("http://127.0.0.1:{port}/beacon", "x");
fetch("http://127.0.0.1:{port}/fetch").catch(() => 0);
fetch("http://fixate-rt-probe.example:{port}/dns").catch(() => 0);
</script></body></html>""")
        with OrganicBoxes(tmp_path / "cache") as organic:
            payload = organic.boxes(page, 1422)
            time.sleep(3)  # ICE gathering and retries run on after the load: give them time to send
    finally:
        server.shutdown()
        udp.close()
    assert payload["found"] and [b[0] for b in payload["boxes"]] == [1]
    assert _Counting.requests == [] and udp.packets == 0, (_Counting.requests, udp.packets)


def test_the_network_jail_has_no_network():
    """What the browser runs inside: a TCP connection and a UDP datagram to a listener on this machine's loopback
    both fail there (DNS, being UDP/TCP to a resolver, has nowhere to go either)."""
    import socket
    import subprocess
    import sys

    from fixate_rt.data.adserp.organic import network_jail

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    probe = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('tcp')\n"
             f"except OSError:\n    pass\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n"
             f"    s.sendto(b'x', ('127.0.0.1', {port}))\n    print('udp')\nexcept OSError:\n    pass\n")
    try:
        outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
        inside = subprocess.run([*network_jail(), sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=30)
    finally:
        listener.close()
    assert outside.stdout.split() == ["tcp", "udp"]  # the probe itself works
    assert inside.returncode == 0 and inside.stdout.split() == [], inside.stdout + inside.stderr
